//! The command line's contract, as `trycmd` files in `tests/cmd/`: help
//! texts, and each documented exit status of `validate`, `submit` and
//! `audit verify`, run on the real binary in a sandbox copy of each case's
//! `NAME.in/` directory. After a deliberate change of an output,
//! `TRYCMD=overwrite cargo test --test cli_snapshots` rewrites the files:
//! review the diff like code.

#[test]
fn cli_snapshots() {
    // Git keeps no file modes but the executable bit: a fresh checkout has
    // the submitter's key readable by all, and the client rightly warns.
    // The sandbox copy keeps the mode set here.
    use std::os::unix::fs::PermissionsExt;
    let key = std::path::Path::new("tests/cmd/submit.in/submitter.key");
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600))
        .expect("the submitter's key fixture is there");
    trycmd::TestCases::new()
        .register_bin(
            "cstatns",
            std::path::Path::new(env!("CARGO_BIN_EXE_cstatns")),
        )
        .case("tests/cmd/*.trycmd");
}
