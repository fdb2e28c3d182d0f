//! The holders' command line as `trycmd` files in `tests/cmd/`: help texts
//! and each documented exit status of `verify-share`, on real share files of
//! a throw-away dev-env ceremony (its passphrases are in the fixtures; no
//! real deployment's share is ever committed). After a deliberate change of
//! an output, `TRYCMD=overwrite cargo test -p keyceremony --test
//! cli_snapshots` rewrites the files: review the diff like code.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin(
            "keyceremony",
            std::path::Path::new(env!("CARGO_BIN_EXE_keyceremony")),
        )
        .case("tests/cmd/*.trycmd");
}
