//! The batch kernel: §3 over whole slices of records.
//!
//! [`super::KeyChain`] calls only these two functions, with the chain's
//! midstates and whole slices; a multi-lane kernel (several records
//! interleaved in the SHA rounds, chosen at run time) replaces the portable
//! loops here without any caller changing. This portable kernel does one
//! record at a time, two compressions a generation.

use zeroize::Zeroize;

use super::hmac::KeyedMac;
use super::{Code, CODE_LEN};
use crate::nir::BODY_LEN;

/// `C_G` of every body into `out` (same length): `K_1` on the body, then
/// `K_2 … K_G` on the code.
pub(super) fn derive(states: &[KeyedMac], bodies: &[[u8; BODY_LEN]], out: &mut [Code]) {
    assert_eq!(bodies.len(), out.len(), "one code per body");
    let Some((first, later)) = states.split_first() else {
        return;
    };
    for (body, code) in bodies.iter().zip(out.iter_mut()) {
        first.mac(body, &mut code.0);
        renew_one(later, &mut code.0);
    }
}

/// Brings every code of generation `from[i]` (in `1..=G`) to `G` in place.
pub(super) fn renew(states: &[KeyedMac], from: &[u32], codes: &mut [Code]) {
    assert_eq!(from.len(), codes.len(), "one generation per code");
    for (&g, code) in from.iter().zip(codes.iter_mut()) {
        let skip = (g as usize).min(states.len());
        renew_one(&states[skip..], &mut code.0);
    }
}

fn renew_one(states: &[KeyedMac], code: &mut [u8; CODE_LEN]) {
    let mut tmp = [0u8; CODE_LEN];
    for s in states {
        s.mac(&code[..], &mut tmp);
        code.copy_from_slice(&tmp);
    }
    tmp.zeroize();
}
