//! Thin adapter over `vsss-rs` (Feldman VSS on P-256), so that its generic
//! types stay in this file and the rest of the module deals in share
//! identifiers (`u8`), scalars and points.
//!
//! `vsss-rs` refuses a threshold of 1 (a degree-0 polynomial); DESIGN §5
//! allows it (a throw-away test deployment with one holder, or `t = 1` with
//! several holders each holding `S` outright). For `t = 1` every share value
//! is `S` and the only commitment is `C0 = S·G`, which is exactly what
//! Feldman's scheme gives for a constant polynomial; verification then goes
//! through `vsss-rs` unchanged, and only splitting and combining are done
//! here.

use p256::{ProjectivePoint, Scalar};
use vsss_rs::{
    feldman, DefaultShare, FeldmanVerifierSet, IdentifierPrimeField, ParticipantIdGeneratorType,
    ReadableShareSet, ShareVerifierGroup, ValueGroup,
};
use zeroize::Zeroize;

use super::error::SealError;
use super::master::MasterSecret;

type P256Share = DefaultShare<IdentifierPrimeField<Scalar>, IdentifierPrimeField<Scalar>>;
type P256Verifier = ShareVerifierGroup<ProjectivePoint>;

/// One share as `vsss-rs` sees it, zeroized on drop.
struct VssShare(P256Share);

impl Drop for VssShare {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

fn identifier(id: u8) -> IdentifierPrimeField<Scalar> {
    IdentifierPrimeField(Scalar::from(u64::from(id)))
}

/// The result of a split: `(identifier, value)` per holder, in the order of
/// `ids`, and the commitments `C0 … C(t-1)`.
pub(crate) struct Split {
    /// Share values; the caller moves them into [`super::Share`]s. Zeroized
    /// on drop.
    pub(crate) values: Vec<(u8, Scalar)>,
    pub(crate) commitments: Vec<ProjectivePoint>,
}

impl Drop for Split {
    fn drop(&mut self) {
        for (_, v) in &mut self.values {
            v.zeroize();
        }
    }
}

/// Splits `S` `t`-of-`ids.len()` with Feldman VSS, giving share `x = ids[i]`
/// to holder `i`.
pub(crate) fn split(
    secret: &MasterSecret,
    threshold: usize,
    ids: &[u8],
) -> Result<Split, SealError> {
    if threshold == 1 {
        return Ok(Split {
            values: ids.iter().map(|&id| (id, *secret.scalar())).collect(),
            commitments: vec![ProjectivePoint::GENERATOR * secret.scalar()],
        });
    }
    let list: Vec<IdentifierPrimeField<Scalar>> = ids.iter().map(|&id| identifier(id)).collect();
    let generators = [ParticipantIdGeneratorType::list(&list)];
    let (shares, verifiers) =
        feldman::split_secret_with_participant_generator::<P256Share, P256Verifier>(
            threshold,
            ids.len(),
            &IdentifierPrimeField(*secret.scalar()),
            None,
            rand::rngs::OsRng,
            &generators,
        )
        .map_err(|e| SealError::Sharing(e.to_string()))?;
    let shares: Vec<VssShare> = shares.into_iter().map(VssShare).collect();
    // `verifiers` is `[generator, C0, …, C(t-1)]`.
    let commitments: Vec<ProjectivePoint> =
        <Vec<P256Verifier> as FeldmanVerifierSet<P256Share, P256Verifier>>::verifiers(&verifiers)
            .iter()
            .map(|v| v.0)
            .collect();
    if commitments.len() != threshold || shares.len() != ids.len() {
        return Err(SealError::Sharing(
            "unexpected number of shares or commitments".into(),
        ));
    }
    let mut values = Vec::with_capacity(ids.len());
    for (&id, share) in ids.iter().zip(&shares) {
        // Shares come back in the order of the identifier list; check rather
        // than trust it, since a mix-up would hand a holder someone else's x.
        if share.0.identifier != identifier(id) {
            return Err(SealError::Sharing("share identifiers out of order".into()));
        }
        values.push((id, share.0.value.0));
    }
    Ok(Split {
        values,
        commitments,
    })
}

/// Feldman check of one share against the commitments `C0 … C(t-1)`:
/// `value·G == Σ C_k · id^k`.
pub(crate) fn verify(id: u8, value: &Scalar, commitments: &[ProjectivePoint]) -> bool {
    if commitments.is_empty() {
        return false;
    }
    let mut set: Vec<P256Verifier> = Vec::with_capacity(commitments.len() + 1);
    set.push(ValueGroup(ProjectivePoint::GENERATOR));
    set.extend(commitments.iter().map(|c| ValueGroup(*c)));
    let share = VssShare(DefaultShare {
        identifier: identifier(id),
        value: IdentifierPrimeField(*value),
    });
    <Vec<P256Verifier> as FeldmanVerifierSet<P256Share, P256Verifier>>::verify_share(&set, &share.0)
        .is_ok()
}

/// Lagrange interpolation at 0 of already verified shares with distinct
/// identifiers (at least two; one share of a `t = 1` ceremony *is* `S`).
pub(crate) fn combine(shares: &[(u8, Scalar)]) -> Result<Scalar, SealError> {
    if let [(_, only)] = shares {
        return Ok(*only);
    }
    let mut plain: Vec<P256Share> = shares
        .iter()
        .map(|(id, value)| DefaultShare {
            identifier: identifier(*id),
            value: IdentifierPrimeField(*value),
        })
        .collect();
    let result = plain.combine();
    for s in &mut plain {
        s.zeroize();
    }
    result
        .map(|v| v.0)
        .map_err(|e| SealError::Sharing(e.to_string()))
}
