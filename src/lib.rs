//! cstatns: keyed-hash transcoding of the NIR into the *code statistique non
//! signifiant* (CStatNS), served over mutual TLS.
//!
//! The contract parts of the design live in one module each: [`nir`] (§2),
//! [`code`] (§3) and [`batch`] (§4). [`seal`] holds the key ceremony, shares
//! and keyring; [`server`] and [`client`] the two ends of the wire.

pub mod alloc;
pub mod audit;
pub mod batch;
pub mod client;
pub mod code;
pub mod config;
pub mod demo;
pub mod devenv;
pub mod harden;
pub mod nir;
pub mod pki;
pub mod receipt;
pub mod seal;
pub mod server;
pub mod tls;
