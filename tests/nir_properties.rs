//! Property tests of §2: any valid body with its computed key passes, any
//! other key fails, and spaces and case do not matter.

// Helpers outside #[test] functions panic on purpose, like the tests.
#![allow(clippy::unwrap_used)]

use cstatns::nir::{Nir, NirError};
use proptest::prelude::*;

/// A body that passes rules 1–4: 13 digits, or 2A/2B at positions 6–7.
fn body() -> impl Strategy<Value = String> {
    (
        proptest::string::string_regex("[0-9]{5}").unwrap(),
        prop_oneof![
            proptest::string::string_regex("[0-9]{2}").unwrap(),
            Just("2A".to_owned()),
            Just("2B".to_owned())
        ],
        proptest::string::string_regex("[0-9]{6}").unwrap(),
    )
        .prop_map(|(a, b, c)| format!("{a}{b}{c}"))
}

fn key_of(body: &str) -> u64 {
    let n: u64 = body
        .replace("2A", "19")
        .replace("2B", "18")
        .parse()
        .unwrap();
    97 - n % 97
}

proptest! {
    #[test]
    fn valid_body_with_its_key_passes(b in body()) {
        let full = format!("{b}{:02}", key_of(&b));
        let nir = Nir::parse(full.as_bytes()).unwrap();
        prop_assert_eq!(nir.body().as_slice(), b.as_bytes());
        let with_key = nir.with_key();
        prop_assert_eq!(with_key.as_slice(), full.as_bytes());
        prop_assert!(Nir::parse(b.as_bytes()).is_ok());
    }

    #[test]
    fn any_other_key_fails(b in body(), k in 0u64..100) {
        prop_assume!(k != key_of(&b));
        let full = format!("{b}{k:02}");
        prop_assert_eq!(Nir::parse(full.as_bytes()).err(), Some(NirError::InvalidKey));
    }

    #[test]
    fn spaces_and_case_do_not_matter(b in body(), spaces in proptest::collection::vec(0usize..4, 16)) {
        let full = format!("{b}{:02}", key_of(&b));
        let mut spaced = String::new();
        for (i, c) in full.chars().enumerate() {
            spaced.push_str(&" ".repeat(spaces[i]));
            spaced.push(c.to_ascii_lowercase());
        }
        let a = Nir::parse(full.as_bytes()).unwrap();
        let z = Nir::parse(spaced.as_bytes()).unwrap();
        prop_assert_eq!(a.body(), z.body());
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = Nir::parse(&raw);
    }
}
