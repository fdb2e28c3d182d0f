//! cstatns: keyed-hash transcoding of the NIR into the *code statistique non
//! signifiant* (CStatNS), served over mutual TLS.
//!
//! The contract parts of the design live in one module each: [`nir`] (§2),
//! [`code`] (§3) and [`batch`] (§4). [`seal`] holds the key ceremony, shares
//! and keyring; `server` (feature `service`) and [`client`] the two ends of
//! the wire, which share only [`wire`]. The throw-away PKI, `dev-env` and
//! `demo` are behind the `dev-kit` feature (on by default), so a production
//! build (`--no-default-features --features service`) has none of them. See
//! `docs/architecture.md`.

pub mod alloc;
pub mod audit;
pub mod batch;
pub mod client;
pub mod code;
pub mod config;
#[cfg(feature = "dev-kit")]
pub mod demo;
#[cfg(feature = "dev-kit")]
pub mod devenv;
pub mod event;
pub mod files;
pub mod harden;
pub mod identity;
pub mod nir;
#[cfg(feature = "dev-kit")]
pub mod pki;
#[cfg(feature = "dev-kit")]
pub mod population;
pub mod receipt;
pub mod renewal;
pub mod seal;
#[cfg(feature = "service")]
pub mod server;
pub mod sweep;
pub mod tls;
pub mod wire;

/// Wipes a vector's whole buffer, its values and its spare capacity, and
/// empties it. `Vec::zeroize` wipes the values one volatile store at a time;
/// here each part is a slice of plain values, which `zeroize` wipes with one
/// fill behind an optimisation barrier: many times faster on a batch's
/// buffers, wiped after every chunk.
pub fn wipe_vec<Z: zeroize::DefaultIsZeroes>(v: &mut Vec<Z>) {
    use zeroize::Zeroize;
    v.as_mut_slice().zeroize();
    v.spare_capacity_mut().zeroize();
    v.clear();
}

/// [`wipe_vec`] for a vector of byte arrays (a batch's NIR bodies).
pub fn wipe_arrays<const N: usize>(v: &mut Vec<[u8; N]>) {
    use zeroize::Zeroize;
    v.as_flattened_mut().zeroize();
    v.spare_capacity_mut().zeroize();
    v.clear();
}

/// An error and its causes on one line, `a: b: c`, leaving out a cause whose
/// text its parent's message already holds (many messages quote their source).
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}
