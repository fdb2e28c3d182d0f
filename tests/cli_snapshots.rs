//! The command line's contract, as `trycmd` files in `tests/cmd/`: help
//! texts, and each documented exit status of `validate`, `submit` and
//! `audit verify`, run on the real binary in a sandbox copy of each case's
//! `NAME.in/` directory. After a deliberate change of an output,
//! `TRYCMD=overwrite cargo test --test cli_snapshots` rewrites the files:
//! review the diff like code.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin(
            "cstatns",
            std::path::Path::new(env!("CARGO_BIN_EXE_cstatns")),
        )
        .case("tests/cmd/*.trycmd");
}
