//! The service's configuration (`server.toml`): never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ =
            cstatns::config::Config::parse(text, std::path::Path::new("/etc/cstatns/server.toml"));
    }
});
