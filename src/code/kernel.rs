//! The batch kernel: §3 over whole slices of records.
//!
//! [`super::KeyChain`] calls only these two functions, with the chain's
//! midstates and whole slices. Records go four by four, or two by two,
//! their compressions interleaved ([`super::shani`], SHA-NI when the CPU
//! has it, chosen at run time; plain compressions one after the other
//! otherwise), two compressions a generation each; an odd record at the
//! end goes alone.

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
    // C_1 of the whole slice (bodies read in place), then the later
    // generations four by four, a pair for what is left.
    let done = super::shani::hmac_bodies(first, bodies, out);
    if done > 0 {
        // Generation 1 alone (the common case) has nothing more to do.
        if !later.is_empty() {
            let mut fours = out[..done].chunks_exact_mut(4);
            for four in &mut fours {
                renew_four(later, four);
            }
            for two in fours.into_remainder().chunks_exact_mut(2) {
                let (x, y) = two.split_at_mut(1);
                renew_pair(later, &mut x[0].0, &mut y[0].0);
            }
        }
        for (body, code) in bodies[done..].iter().zip(&mut out[done..]) {
            first.mac(body, &mut code.0);
            renew_one(later, &mut code.0);
        }
        return;
    }
    let mut pairs = out.chunks_exact_mut(2);
    let mut bodies2 = bodies.chunks_exact(2);
    for (codes, two) in (&mut pairs).zip(&mut bodies2) {
        let (x, y) = codes.split_at_mut(1);
        let (a, b) = (&mut x[0].0, &mut y[0].0);
        first.mac2_body(&two[0], a, first, &two[1], b);
        renew_pair(later, a, b);
    }
    for (body, code) in bodies2.remainder().iter().zip(pairs.into_remainder()) {
        first.mac(body, &mut code.0);
        renew_one(later, &mut code.0);
    }
}

/// Two codes through the same generations, interleaved.
/// Each step is written over the codes themselves: a temporary per code,
/// copied back and wiped at the end, cost a fifth of a renewal.
fn renew_pair(states: &[KeyedMac], a: &mut [u8; CODE_LEN], b: &mut [u8; CODE_LEN]) {
    for s in states {
        s.mac2_code_in_place(a, s, b);
    }
}

/// Four codes through the same generations, interleaved, in place.
fn renew_four(states: &[KeyedMac], four: &mut [Code]) {
    let [a, b, c, d] = four else {
        unreachable!("four codes")
    };
    for s in states {
        s.mac4_code_in_place([&mut a.0, &mut b.0, &mut c.0, &mut d.0]);
    }
}

/// Brings every code of generation `from[i]` (in `1..=G`) to `G` in place:
/// four by four where four codes in a row share their generation (a
/// renewal's usual input), two by two otherwise.
pub(super) fn renew(states: &[KeyedMac], from: &[u32], codes: &mut [Code]) {
    assert_eq!(from.len(), codes.len(), "one generation per code");
    let mut at = 0;
    while at + 4 <= codes.len() {
        let g = from[at];
        if from[at + 1..at + 4].iter().any(|&h| h != g) {
            renew_pairs(states, &from[at..at + 4], &mut codes[at..at + 4]);
        } else {
            renew_four(&states[skip(states, g)..], &mut codes[at..at + 4]);
        }
        at += 4;
    }
    renew_pairs(states, &from[at..], &mut codes[at..]);
}

/// [`renew`] two by two, whatever the generations.
fn renew_pairs(states: &[KeyedMac], from: &[u32], codes: &mut [Code]) {
    let mut pairs = codes.chunks_exact_mut(2);
    let mut from2 = from.chunks_exact(2);
    for (two, g) in (&mut pairs).zip(&mut from2) {
        let (x, y) = two.split_at_mut(1);
        let (mut a, mut b) = (&mut x[0].0, &mut y[0].0);
        let (mut ga, mut gb) = (skip(states, g[0]), skip(states, g[1]));
        // The older code alone up to the younger one's generation, then
        // both through the generations they share.
        if ga > gb {
            std::mem::swap(&mut a, &mut b);
            std::mem::swap(&mut ga, &mut gb);
        }
        renew_one(&states[ga..gb], a);
        renew_pair(&states[gb..], a, b);
    }
    for (&g, code) in from2.remainder().iter().zip(pairs.into_remainder()) {
        renew_one(&states[skip(states, g)..], &mut code.0);
    }
}

/// The generations a code of generation `g` has already been through.
fn skip(states: &[KeyedMac], g: u32) -> usize {
    (g as usize).min(states.len())
}

fn renew_one(states: &[KeyedMac], code: &mut [u8; CODE_LEN]) {
    for s in states {
        s.mac_code_in_place(code);
    }
}
