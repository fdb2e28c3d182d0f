//! `POST /v1/cstatns` and `POST /v1/renewal` (§4), streamed both ways.
//!
//! A reader task cuts the request body into chunks of whole lines; each chunk
//! is answered on the blocking pool ([`process_chunk`]); the join handles go
//! through a bounded channel to the response stream, which awaits them in
//! order. At most [`IN_FLIGHT`] chunks exist at once, so memory stays flat
//! whatever the batch size, and both cores hash while the network moves bytes.
//! No more chunks of NIRs are worked on at once, over all batches, than the
//! service has cores ([`set_cores`]).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{ApiError, AppState};
use crate::batch::{
    process_chunk_guarded, project, Candidates, Chunk, Counts, Decoder, Format, Operation, Scratch,
    Verdict,
};
use crate::config::{ClientEntry, Role};
use crate::event::{BatchId, ClientName, Event, ProjectName, Purpose, Term};
use crate::identity::lines::{Qualities, TraitScratch};
use crate::identity::{Backend, Columns};
use crate::receipt::{now_rfc3339, Receipt};
use crate::seal::{Keys, ProjectTerms};
use crate::tls::PeerIdentity;

/// Chunks answered or being answered, beyond the one the reader is filling.
const IN_FLIGHT: usize = 4;

/// Chunks of NIRs being worked on, by all batches: as many as the cores.
static COMPUTING: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();

/// Sets how many chunks of NIRs are worked on at once, from the cores the
/// service may use (read before it confines itself, as the cgroup's quota
/// may then be out of its reach). Without it, the cores seen at the first
/// batch.
pub fn set_cores(cores: usize) {
    let _ = COMPUTING.set(Arc::new(tokio::sync::Semaphore::new(cores.max(1))));
}

fn computing() -> Arc<tokio::sync::Semaphore> {
    Arc::clone(COMPUTING.get_or_init(|| {
        Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, std::num::NonZero::get),
        ))
    }))
}

/// Most of a refused body read (and dropped) before answering.
const DRAIN_LIMIT: usize = 64 << 20;

/// Most of a body sent without `Content-Length` (chunked) that is read whole
/// before answering. The answer streams, so its status is sent before the
/// end of a long body; a body that declares no length is therefore read to
/// its end first, so that one over `max_request_bytes` gets 413 and never a
/// 200 cut short. A larger one must declare its length (411).
const UNDECLARED_LIMIT: u64 = 8 << 20;

/// Most bytes of undeclared-length bodies held at once, all batches
/// together: past it a body without `Content-Length` is refused (411) rather
/// than buffered, so that such bodies cannot fill the memory.
const UNDECLARED_BUDGET: u64 = 128 << 20;

/// Bytes of undeclared-length bodies held now.
static UNDECLARED_HELD: AtomicU64 = AtomicU64::new(0);

/// A part of [`UNDECLARED_BUDGET`], given back on drop.
struct Held(u64);

impl Held {
    fn take(&mut self, n: u64) -> bool {
        let before = UNDECLARED_HELD.fetch_add(n, Ordering::Relaxed);
        self.0 += n;
        before + n <= UNDECLARED_BUDGET
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        UNDECLARED_HELD.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// The scratch rooms of the chunks of NIRs being worked on, reused from
/// chunk to chunk: one a [`COMPUTING`] permit, whichever blocking thread
/// runs the chunk (a room a thread would leave the service's memory
/// following how many threads the pool has started).
static SCRATCHES: std::sync::Mutex<Vec<Scratch>> = std::sync::Mutex::new(Vec::new());

thread_local! {
    /// One scratch per blocking thread, reused from chunk to chunk, for trait
    /// batches (which take no permit).
    static TRAIT_SCRATCH: RefCell<TraitScratch> = RefCell::new(TraitScratch::default());
}

/// What every chunk of a batch is answered with.
#[derive(Clone)]
struct Shape {
    op: Operation,
    format: Format,
    is_project: bool,
    /// A trait batch's columns and the register it is looked up in.
    traits: Option<(Columns, Arc<Backend>)>,
}

pub(super) async fn derive(
    state: State<Arc<AppState>>,
    id: Extension<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    start(state, id, headers, body, Operation::Derive).await
}

pub(super) async fn renew(
    state: State<Arc<AppState>>,
    id: Extension<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    start(state, id, headers, body, Operation::Renew).await
}

/// `POST /v1/projects/{id}/cspens`: a research project's batch. The
/// submitter gets `index,status`; the codes go, encrypted to the project's
/// matching body, to its result file.
pub(super) async fn cspens(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    axum::extract::Path(project): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let admitted = admit(
        &state,
        &id,
        &headers,
        Operation::Derive,
        Mode::Project(&project),
    )?;
    run_batch(state, id, admitted, body, Operation::Derive).await
}

/// `POST /v1/projects/{id}/renewal`: the project's matching body lifts its
/// CSpeNS codes (`index,cstatns,generation`, §4's renewal batch) to the
/// project chain's current generation, and gets them back.
pub(super) async fn cspens_renewal(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    axum::extract::Path(project): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let admitted = admit(
        &state,
        &id,
        &headers,
        Operation::Renew,
        Mode::Renewal(&project),
    )?;
    run_batch(state, id, admitted, body, Operation::Renew).await
}

/// Which keys a batch runs on.
#[derive(Clone, Copy)]
enum Mode<'a> {
    /// The CStatNS chain (`/v1/cstatns`, `/v1/renewal`).
    Cstatns,
    /// A research project's chain, for its submitter: no code back.
    Project(&'a str),
    /// A research project's chain, for its matching body's renewals.
    Renewal(&'a str),
}

fn refused(state: &AppState, id: &PeerIdentity, op: Operation, e: ApiError) -> ApiError {
    refused_as(state, id, op.name(), e)
}

/// [`refused`] for a batch whose operation is logged under `name`.
fn refused_as(state: &AppState, id: &PeerIdentity, name: &'static str, e: ApiError) -> ApiError {
    state.log(
        Event::RequestRefused {
            operation: Some(Term::from(name)),
            reason: Term::from(e.code()),
            role: None,
        },
        Some(id),
    );
    e
}

/// What the headers of a batch request establish before any byte of the body.
struct Admitted {
    entry: ClientEntry,
    keys: Keys,
    is_csv: bool,
    purpose: String,
    max: u64,
    /// Longest wait for the body's next bytes.
    idle: std::time::Duration,
    /// For a research project's batch: its id and terms.
    project: Option<(String, ProjectTerms)>,
    /// For a matching body's renewal batch: the project's id.
    renewal: Option<String>,
    /// The batch's part of its client's quota (NIR batches of a client
    /// with a quota).
    quota: Option<super::guard::BatchQuota>,
}

/// Content type, then purpose, then size: the cheap checks before any byte
/// of the body. Each refusal is logged.
fn admit(
    state: &AppState,
    id: &PeerIdentity,
    headers: &HeaderMap,
    op: Operation,
    mode: Mode<'_>,
) -> Result<Admitted, ApiError> {
    let role = match mode {
        Mode::Renewal(_) => Role::Matcher,
        Mode::Cstatns | Mode::Project(_) => Role::Submitter,
    };
    let entry = state.require(id, role)?.clone();
    let op_name = match mode {
        Mode::Cstatns => op.name(),
        Mode::Project(_) => "cspens",
        Mode::Renewal(_) => "cspens_renewal",
    };
    let keys = state
        .keys()
        .map_err(|e| refused_as(state, id, op_name, e))?;
    // A project batch runs on the project's own chain, from its submitter
    // (or, for renewals, its matching body) only.
    let (keys, project, renewal) = match mode {
        Mode::Cstatns => (keys, None, None),
        Mode::Project(p) => {
            drop(keys);
            let (keys, terms) = state
                .vault
                .project_keys(p, &entry.name)
                .map_err(|e| refused_as(state, id, "cspens", ApiError::Project(e)))?;
            (keys, Some((p.to_owned(), terms)), None)
        }
        Mode::Renewal(p) => {
            drop(keys);
            let (keys, terms) = state
                .vault
                .project_keys_for_matcher(p, &id.fingerprint)
                .map_err(|e| refused_as(state, id, "cspens_renewal", ApiError::Project(e)))?;
            (keys, None, Some((p.to_owned(), terms)))
        }
    };
    let refused = |state: &AppState, id: &PeerIdentity, _: Operation, e: ApiError| {
        refused_as(state, id, op_name, e)
    };
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let is_csv = match ctype.as_deref() {
        Some("text/csv") => true,
        Some("application/x-ndjson") => false,
        _ => return Err(refused(state, id, op, ApiError::UnsupportedType)),
    };
    let purpose = match (&project, &renewal) {
        (Some((_, terms)), _) | (_, Some((_, terms))) => project_purpose(terms, headers),
        (None, None) => purpose_of(&entry, headers),
    }
    .map_err(|e| refused(state, id, op, e))?;
    let max = state.config.max_request_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(refused(state, id, op, ApiError::TooLarge(max)));
    }
    // The guard, last: a refusal above does not count as a batch. Every
    // NIR batch has one (its sweep detector), with or without a quota.
    let quota = match (op, mode) {
        (Operation::Derive, Mode::Cstatns | Mode::Project(_)) => Some(
            state
                .guard
                .admit(&entry.name, &purpose, entry.quota.unwrap_or_default())
                .map_err(|r| {
                    let e = if r.limit == "sweep_suspected" {
                        ApiError::Suspended(r)
                    } else {
                        ApiError::QuotaExceeded(r)
                    };
                    refused(state, id, op, e)
                })?,
        ),
        _ => None,
    };
    Ok(Admitted {
        entry,
        keys,
        is_csv,
        purpose,
        max,
        idle: std::time::Duration::from_secs(state.config.body_idle_timeout_seconds.max(1)),
        project,
        renewal: renewal.map(|(p, _)| p),
        quota,
    })
}

/// A project batch's purpose is the project's: `CStatNS-Purpose` may be
/// left out, or must name it.
fn project_purpose(terms: &ProjectTerms, headers: &HeaderMap) -> Result<String, ApiError> {
    let mut given = headers.get_all("cstatns-purpose").iter();
    match (given.next(), given.next()) {
        (None, _) => Ok(terms.purpose.clone()),
        (Some(v), None) if v.to_str().ok() == Some(terms.purpose.as_str()) => {
            Ok(terms.purpose.clone())
        }
        _ => Err(ApiError::BadRequest(
            "CStatNS-Purpose must be the research project's purpose (or be left out)".into(),
        )),
    }
}

/// The batch's purpose: the `CStatNS-Purpose` header, once, naming one of the
/// client's purposes; or the client's only purpose when the header is absent.
fn purpose_of(entry: &ClientEntry, headers: &HeaderMap) -> Result<String, ApiError> {
    let mut given = headers.get_all("cstatns-purpose").iter();
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        return Err(ApiError::BadRequest(
            "CStatNS-Purpose must be given once".into(),
        ));
    }
    match first {
        Some(v) => match v.to_str() {
            Ok(p) if entry.purposes.iter().any(|q| q == p) => Ok(p.to_owned()),
            _ => Err(ApiError::BadRequest(
                "CStatNS-Purpose is not one of the purposes configured for this certificate"
                    .into(),
            )),
        },
        None if entry.purposes.len() == 1 => Ok(entry.purposes[0].clone()),
        None => Err(ApiError::BadRequest(
            "CStatNS-Purpose is required: this certificate has several purposes (or none configured)"
                .into(),
        )),
    }
}

/// Reads the body until its start (byte-order mark, blank lines, header
/// line) is complete; returns the decoder, which knows the format and the
/// bytes read, and the chunks it has already cut. The size limit is checked
/// as bytes come, the start included. On a refusal, drains what the client is
/// still sending (bounded) so that it reads the refusal rather than a reset;
/// but a seal under way is answered at once, so that the seal does not wait
/// for a slow client (the caller then lets go of the keys).
async fn read_start(
    body: &mut axum::body::BodyDataStream,
    op: Operation,
    admitted: &Admitted,
) -> Result<(Decoder, Vec<Chunk>, Format), ApiError> {
    let mut decoder = Decoder::new(op, admitted.is_csv);
    let mut ready = Vec::new();
    let max = admitted.max;
    let refusal = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(admitted.idle, futures_util::StreamExt::next(body)) => match next {
                Ok(next) => next,
                Err(_) => {
                    // A silent client gets no drain: it is sending nothing.
                    return Err(ApiError::BadRequest(
                        "no byte of the request body came for too long".into(),
                    ));
                }
            },
            () = admitted.keys.retired() => return Err(ApiError::Sealed),
        };
        match next {
            Some(Ok(b)) => {
                if let Err(e) = decoder.push(&b, &mut |c| ready.push(c)) {
                    break ApiError::BadRequest(e.to_string());
                }
                if decoder.bytes_fed() > max {
                    break ApiError::TooLarge(max);
                }
                if let Some(format) = decoder.format() {
                    return Ok((decoder, ready, format));
                }
            }
            Some(Err(_)) => {
                break ApiError::BadRequest("the request body could not be read".into());
            }
            // The body ended within its start: a short NDJSON or CSV body
            // whose header is its last line, or a refusal.
            None => match decoder.finish(&mut |c| ready.push(c)) {
                Ok(format) => return Ok((decoder, ready, format)),
                Err(e) => break ApiError::BadRequest(e.to_string()),
            },
        }
    };
    drop(ready); // wiped by the chunks' Drop
    drain(body).await;
    Err(refusal)
}

async fn start(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
    op: Operation,
) -> Result<Response, ApiError> {
    let admitted = admit(&state, &id, &headers, op, Mode::Cstatns)?;
    run_batch(state, id, admitted, body, op).await
}

async fn run_batch(
    state: Arc<AppState>,
    id: PeerIdentity,
    mut admitted: Admitted,
    body: Body,
    op: Operation,
) -> Result<Response, ApiError> {
    let body = if axum::body::HttpBody::size_hint(&body).exact().is_some() {
        body
    } else {
        read_undeclared(body, &admitted)
            .await
            .map_err(|e| refused(&state, &id, op, e))?
    };
    let mut body = body.into_data_stream();
    let (decoder, ready, format) = read_start(&mut body, op, &admitted)
        .await
        .map_err(|e| refused(&state, &id, op, e))?;
    let traits = match decoder.traits() {
        None => None,
        Some(columns) => match state.register().await {
            Ok(register) => Some((columns, register)),
            Err(why) => {
                drop(ready); // wiped by the chunks' Drop
                drain(&mut body).await;
                return Err(refused(&state, &id, op, ApiError::RegisterUnavailable(why)));
            }
        },
    };
    let batch = BatchId::random();
    let mut run =
        Run::begin(&state, &id, &admitted, op, &batch).map_err(|e| refused(&state, &id, op, e))?;
    let guard = admitted.quota.take().map(|q| {
        super::guard::GuardRun::new(
            state.clone(),
            q,
            batch.clone(),
            ClientName::of_client(&admitted.entry),
            Purpose::allowed(&admitted.purpose),
            id.clone(),
        )
    });
    if let Some(g) = &guard {
        g.started();
    }
    run.guard = guard.clone();
    if let Some((project, terms)) = &admitted.project {
        // Dropped with the run if this fails: the batch is logged aborted.
        let file = super::results::ResultFile::create(
            &state.config.results_dir(),
            project,
            batch.as_str(),
            &terms.matcher_recipient,
            &terms.matcher_fingerprint,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "cannot create a project result file");
            ApiError::Internal
        })?;
        run.result = Some((project.clone(), file));
    }
    let shape = Shape {
        op,
        format,
        is_project: admitted.project.is_some(),
        traits,
    };
    let (tx, rx) = mpsc::channel::<Job>(IN_FLIGHT);
    run.bytes_read.store(decoder.bytes_fed(), Ordering::Relaxed);
    let reader = tokio::spawn(read_body(
        body,
        decoder,
        ready,
        run.bytes_read.clone(),
        shape.clone(),
        admitted.keys.clone(),
        admitted.max,
        admitted.idle,
        guard,
        tx,
    ));
    let mut resp = (
        StatusCode::OK,
        Body::from_stream(answer(rx, reader, run, &shape)),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(
        "cstatns-generation",
        HeaderValue::from(admitted.keys.chain().generation()),
    );
    // One batch a connection: closing it frees (and so wipes, through the
    // zeroizing allocator) hyper's and rustls's buffers, which would
    // otherwise keep the batch's last bytes until the next request.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        "cstatns-batch",
        HeaderValue::from_str(batch.as_str()).map_err(|_| ApiError::Internal)?,
    );
    Ok(resp)
}

/// The response body: the header line, then each chunk's answer in order;
/// the batch is logged as completed after the last, or as aborted (and the
/// stream ends in error) when the reader or a worker stops early.
fn answer(
    rx: mpsc::Receiver<Job>,
    reader: JoinHandle<Result<(), Abort>>,
    run: Run,
    shape: &Shape,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    let header_line = if shape.traits.is_some() {
        crate::identity::lines::response_header(shape.format, shape.is_project)
    } else if shape.is_project {
        project::response_header(shape.format)
    } else {
        shape.format.response_header()
    }
    .map(Bytes::from);
    futures_util::stream::unfold(
        (rx, Some(reader), run, header_line),
        |(mut rx, reader, mut run, header_line)| async move {
            if let Some(h) = header_line {
                return Some((Ok(h), (rx, reader, run, None)));
            }
            let reader = reader?;
            let end = |run, e| Some((Err(e), (rx_none(), None, run, None)));
            match rx.recv().await {
                Some(handle) => match handle.await {
                    Ok(Ok((out, codes, counts, qualities))) => {
                        run.add(&counts, qualities.as_ref());
                        if let Some(mut codes) = codes {
                            let written = run.write_result(&codes);
                            crate::wipe_vec(&mut codes);
                            if let Err(e) = written {
                                tracing::error!(error = %e, "a project result could not be written");
                                return end(run, e);
                            }
                        }
                        Some((Ok(Bytes::from(out)), (rx, Some(reader), run, None)))
                    }
                    Ok(Err(abort)) => {
                        run.reason = Some(abort);
                        end(run, abort.into_io())
                    }
                    Err(_) => end(run, std::io::Error::other("a worker failed")),
                },
                None => match reader.await {
                    Ok(Ok(())) => match run.complete() {
                        Ok(()) => None,
                        Err(e) => end(run, e),
                    },
                    Ok(Err(abort)) => {
                        run.reason = Some(abort);
                        end(run, abort.into_io())
                    }
                    Err(_) => end(run, std::io::Error::other("the reader failed")),
                },
            }
        },
    )
}

/// A closed receiver, for the state after the stream's last item.
fn rx_none() -> mpsc::Receiver<Job> {
    mpsc::channel(1).1
}

/// A chunk's answer to the client, for a project batch the matching body's
/// lines, and the counts; and for a trait batch, the counts per quality.
/// An error when the keys were retired first, or the register could not be
/// reached.
type Job = JoinHandle<Result<(Vec<u8>, Option<Vec<u8>>, Counts, Option<Qualities>), Abort>>;

/// Reads the body, cuts it into chunks and queues one blocking job per chunk.
/// Counts the body bytes read in `bytes_read` (for the receipt, even of an
/// aborted batch).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
async fn read_body(
    mut body: axum::body::BodyDataStream,
    mut decoder: Decoder,
    mut ready: Vec<Chunk>,
    bytes_read: Arc<AtomicU64>,
    shape: Shape,
    keys: Keys,
    max: u64,
    idle: std::time::Duration,
    guard: Option<Arc<super::guard::GuardRun>>,
    tx: mpsc::Sender<Job>,
) -> Result<(), Abort> {
    let guard = guard.as_ref();
    while !decoder.is_finished() {
        queue(&mut ready, &shape, &keys, guard, &tx).await?;
        // A seal or a stop must not wait for a slow client's next bytes.
        let next = tokio::select! {
            next = tokio::time::timeout(idle, futures_util::StreamExt::next(&mut body)) => {
                next.map_err(|_| Abort::BodyTimeout)?
            }
            () = keys.retired() => return Err(Abort::Sealed),
        };
        let pushed = match next {
            Some(Ok(data)) => decoder.push(&data, &mut |c| ready.push(c)),
            Some(Err(_)) => return Err(Abort::BadBody),
            None => decoder.finish(&mut |c| ready.push(c)).map(drop),
        };
        bytes_read.store(decoder.bytes_fed(), Ordering::Relaxed);
        // After the start, pushing and finishing do not fail.
        pushed.map_err(|_| Abort::BadBody)?;
        if decoder.bytes_fed() > max {
            return Err(Abort::TooLarge);
        }
    }
    queue(&mut ready, &shape, &keys, guard, &tx).await?;
    Ok(())
}

/// Reads a body that declares no length to its end, at most
/// [`UNDECLARED_LIMIT`] and `max_request_bytes`: 413 past the limit, 411
/// past [`UNDECLARED_LIMIT`]. Returns the body read, to be decoded as any.
async fn read_undeclared(body: Body, admitted: &Admitted) -> Result<Body, ApiError> {
    let cap = admitted.max.min(UNDECLARED_LIMIT);
    let mut stream = body.into_data_stream();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut read = 0u64;
    let mut held = Held(0);
    let refusal = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(admitted.idle, futures_util::StreamExt::next(&mut stream)) => match next {
                Ok(next) => next,
                Err(_) => return Err(ApiError::BadRequest(
                    "no byte of the request body came for too long".into(),
                )),
            },
            () = admitted.keys.retired() => return Err(ApiError::Sealed),
        };
        match next {
            Some(Ok(b)) => {
                read += b.len() as u64;
                let within = held.take(b.len() as u64);
                parts.push(b);
                if read > admitted.max {
                    break ApiError::TooLarge(admitted.max);
                }
                if read > cap || !within {
                    break ApiError::LengthRequired(UNDECLARED_LIMIT);
                }
            }
            Some(Err(_)) => {
                break ApiError::BadRequest("the request body could not be read".into())
            }
            None => {
                // The budget is given back when the body is read (or dropped).
                let parts = parts.into_iter().map(move |p| {
                    let _ = &held;
                    Ok::<_, std::convert::Infallible>(p)
                });
                return Ok(Body::from_stream(futures_util::stream::iter(parts)));
            }
        }
    };
    drop(parts); // wiped as they are freed (the zeroizing allocator)
    drain(&mut stream).await;
    Err(refusal)
}

/// Reads and drops what is left of a refused body, up to [`DRAIN_LIMIT`], so
/// that the client, still sending, reads the refusal instead of a reset
/// connection. Most refusals come before the body is read at all, and a
/// client sending `Expect: 100-continue` (ours does) then sends nothing.
async fn drain(body: &mut axum::body::BodyDataStream) {
    let mut drained = 0usize;
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(5));
    tokio::pin!(deadline);
    while drained < DRAIN_LIMIT {
        tokio::select! {
            next = futures_util::StreamExt::next(body) => match next {
                Some(Ok(b)) => drained += b.len(),
                _ => return,
            },
            () = &mut deadline => return,
        }
    }
}

/// Hands every ready chunk to the blocking pool, in order; waits when
/// [`IN_FLIGHT`] jobs are already queued, and for a chunk of NIRs, until a
/// core is free for it.
async fn queue(
    ready: &mut Vec<Chunk>,
    shape: &Shape,
    keys: &Keys,
    guard: Option<&Arc<super::guard::GuardRun>>,
    tx: &mpsc::Sender<Job>,
) -> Result<(), Abort> {
    for chunk in ready.drain(..) {
        if !keys.is_live() {
            // The drain drops (and wipes) the chunks not yet queued.
            return Err(Abort::Sealed);
        }
        // No more chunks of NIRs are worked on at once than there are cores:
        // more would only take turns on them, each worker thread keeping its
        // own scratch room (and so the service's memory would follow how many
        // threads the blocking pool happened to start). A chunk of traits
        // waits on the register, not on a core: it takes no turn.
        let computing = match shape.traits {
            Some(_) => None,
            None => Some(tokio::select! {
                p = computing().acquire_owned() => p.map_err(|_| Abort::Sealed)?,
                () = keys.retired() => return Err(Abort::Sealed),
            }),
        };
        let held = keys.clone();
        // Taken here, in the batch's order: the quota is cut in that order.
        let mut ticket = guard.map(super::guard::GuardRun::ticket);
        let shape = shape.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _computing = computing;
            let Shape {
                op,
                format,
                is_project,
                traits,
            } = shape;
            // Sealed or stopping since this chunk was queued: no more codes.
            if !held.is_live() {
                return Err(Abort::Sealed);
            }
            let chain = held.chain();
            // Codes by NIR: `process_chunk` reserves the answer's exact
            // length once it has read the lines (the pages touched are those
            // written, and the block wiped on free is no longer than them).
            let mut out = Vec::new();
            let mut counts = Counts::default();
            let mut verdict = |c: Candidates<'_>| match ticket.as_mut() {
                Some(t) => t.verdict(c.bodies, c.count, c.seen),
                None => Verdict::all(),
            };
            if let Some((columns, register)) = &traits {
                out.reserve(match &chunk {
                    Chunk::Lines(v) => v.len() * 4,
                    Chunk::OversizedLine(_) => 128,
                });
                let mut qualities = Qualities::default();
                let mut codes = is_project.then(|| Vec::with_capacity(out.capacity()));
                let done = TRAIT_SCRATCH.with_borrow_mut(|s| {
                    crate::identity::lines::process_chunk(
                        format,
                        columns,
                        register,
                        chain,
                        &chunk,
                        s,
                        crate::identity::lines::Answer {
                            client: &mut out,
                            matcher: codes.as_mut(),
                            counts: &mut counts,
                            qualities: &mut qualities,
                        },
                        &mut verdict,
                    )
                });
                drop(ticket);
                crate::code::scrub_stack();
                if let Err(e) = done {
                    tracing::error!(error = %crate::describe(&e), "the register could not be reached during a batch of traits: it is given up");
                    crate::wipe_vec(&mut out);
                    if let Some(c) = codes.as_mut() {
                        crate::wipe_vec(c);
                    }
                    return Err(Abort::RegisterUnavailable);
                }
                return Ok((out, codes, counts, Some(qualities)));
            }
            let scratches = || {
                SCRATCHES
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
            };
            let mut scratch = scratches().pop().unwrap_or_default();
            process_chunk_guarded(
                op,
                format,
                chain,
                &chunk,
                &mut scratch,
                &mut out,
                &mut counts,
                &mut verdict,
            );
            // Wiped after every chunk (by `process_chunk_guarded`); a chunk
            // that panicked drops (and so wipes) its scratch instead.
            scratches().push(scratch);
            drop(ticket);
            // What the kernel's frames left on this thread's stack goes now.
            crate::code::scrub_stack();
            if !is_project {
                return Ok((out, None, counts, None));
            }
            // No code reaches the submitter of a project batch.
            let mut client = Vec::with_capacity(out.len() / 2);
            let mut codes = Vec::with_capacity(out.len());
            project::split_answer(format, &out, &mut client, &mut codes);
            crate::wipe_vec(&mut out);
            Ok((client, Some(codes), counts, None))
        });
        // A client that stops reading fills the channel: a seal must not
        // wait on it (the job, dropped, finds the keys retired and wipes
        // its chunk).
        tokio::select! {
            sent = tx.send(job) => sent.map_err(|_| Abort::ClientGone)?,
            () = keys.retired() => return Err(Abort::Sealed),
        }
    }
    Ok(())
}

/// How long a batch may keep the keys after a seal or stop began: enough to
/// log its end at its next chunk; past it the keys are let go even if the
/// client has stopped reading (the batch's end is then logged when its
/// connection goes).
const KEY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The keys a batch holds until its end is logged, and a watchdog that takes
/// them from it [`KEY_GRACE`] after a seal began. The watchdog ends with the
/// batch (the guard), so no task outlives its batch.
struct KeyHold {
    keys: Arc<std::sync::Mutex<Option<Keys>>>,
    _watchdog: tokio_util::sync::DropGuard,
}

impl KeyHold {
    fn new(keys: Keys) -> Self {
        let retirement = keys.retirement();
        let keys = Arc::new(std::sync::Mutex::new(Some(keys)));
        let done = tokio_util::sync::CancellationToken::new();
        tokio::spawn({
            let (keys, done) = (Arc::downgrade(&keys), done.clone());
            async move {
                tokio::select! {
                    () = retirement.cancelled() => {}
                    () = done.cancelled() => return,
                }
                tokio::select! {
                    () = tokio::time::sleep(KEY_GRACE) => {}
                    () = done.cancelled() => return,
                }
                if let Some(keys) = keys.upgrade() {
                    let taken = keys.lock().map(|mut k| k.take());
                    if matches!(taken, Ok(Some(_))) {
                        tracing::warn!("a batch still held the keys after a seal: let go");
                    }
                }
            }
        });
        Self {
            keys,
            _watchdog: done.drop_guard(),
        }
    }

    fn release(&self) {
        if let Ok(mut k) = self.keys.lock() {
            k.take();
        }
    }
}

/// Why a batch ended before its last line: recorded in its `batch_end`.
#[derive(Debug, Clone, Copy)]
enum Abort {
    /// The body passed `max_request_bytes` (sent without `Content-Length`).
    TooLarge,
    /// The service was sealed or stopped during the batch.
    Sealed,
    /// The client stopped reading the answer.
    ClientGone,
    /// The body could not be read (the client broke off, bad chunking).
    BadBody,
    /// No byte of the body came for `body_idle_timeout_seconds`.
    BodyTimeout,
    /// The register's database could not be reached during a batch of
    /// traits.
    RegisterUnavailable,
}

impl Abort {
    fn reason(self) -> &'static str {
        match self {
            Abort::TooLarge => "too_large",
            Abort::Sealed => "sealed",
            Abort::ClientGone => "client_gone",
            Abort::BadBody => "body_unreadable",
            Abort::BodyTimeout => "body_timeout",
            Abort::RegisterUnavailable => "register_unavailable",
        }
    }

    fn into_io(self) -> std::io::Error {
        std::io::Error::other(match self {
            Abort::TooLarge => "the request is larger than the configured limit",
            Abort::Sealed => "the service was sealed or stopped during the batch",
            Abort::ClientGone => "the client went away",
            Abort::BadBody => "the request body could not be read",
            Abort::BodyTimeout => "no byte of the request body came for too long",
            Abort::RegisterUnavailable => "the register could not be reached during the batch",
        })
    }
}

/// A batch in progress: its counts, and its receipt once complete. Dropped
/// before completion (client gone, error), it logs the batch as aborted.
struct Run {
    state: Arc<AppState>,
    batch: BatchId,
    /// `cstatns`, `renewal` or `cspens`, as in the log and the receipt.
    op_name: &'static str,
    /// A project batch's result file, until it is whole.
    result: Option<(String, super::results::ResultFile)>,
    purpose: Purpose,
    receipt: Option<Receipt>,
    clock: Instant,
    id: PeerIdentity,
    bytes_read: Arc<AtomicU64>,
    /// Why the batch is ending early, when known.
    reason: Option<Abort>,
    /// The batch's guard, for its receipt.
    guard: Option<Arc<super::guard::GuardRun>>,
    /// Held until the batch is logged, so that a seal or a stop, which waits
    /// for every copy of the keys to go, logs after the batch's end (but no
    /// longer than [`KEY_GRACE`] into a seal).
    keys: KeyHold,
}

impl Run {
    /// Logs the start of the batch (fail closed: no code leaves before it is
    /// logged) and prepares its receipt.
    fn begin(
        state: &Arc<AppState>,
        id: &PeerIdentity,
        admitted: &Admitted,
        op: Operation,
        batch: &BatchId,
    ) -> Result<Self, ApiError> {
        // A seal that began while the start was read: no batch_start after it.
        if !admitted.keys.is_live() {
            return Err(ApiError::Sealed);
        }
        let generation = admitted.keys.chain().generation();
        let purpose = Purpose::allowed(&admitted.purpose);
        let started = now_rfc3339();
        let op_name = if admitted.project.is_some() {
            "cspens"
        } else if admitted.renewal.is_some() {
            "cspens_renewal"
        } else {
            op.name()
        };
        state
            .log(
                Event::BatchStart {
                    batch: batch.clone(),
                    operation: Term::from(op_name),
                    client: ClientName::of_client(&admitted.entry),
                    purpose: purpose.clone(),
                    generation,
                    project: admitted
                        .project
                        .as_ref()
                        .map(|(p, _)| p)
                        .or(admitted.renewal.as_ref())
                        .map(|p| ProjectName::of_project(p)),
                },
                Some(id),
            )
            .ok_or(ApiError::AuditUnavailable)?;
        Ok(Self {
            state: state.clone(),
            batch: batch.clone(),
            op_name,
            result: None,
            purpose,
            receipt: Some(Receipt {
                batch: batch.as_str().to_owned(),
                operation: op_name.to_owned(),
                client: id.subject.clone(),
                client_fingerprint: id.fingerprint.clone(),
                purpose: admitted.purpose.clone(),
                generation,
                outcome: "aborted".into(),
                records: 0,
                ok: 0,
                rejected: 0,
                counts: Counts::default(),
                bytes: 0,
                started,
                ended: String::new(),
                seconds: 0.0,
                guard: None,
                sweep: None,
                quality: None,
                log_seq: 0,
                ceremony_id: String::new(),
                signature: String::new(),
            }),
            clock: Instant::now(),
            id: id.clone(),
            bytes_read: Arc::new(AtomicU64::new(0)),
            reason: None,
            guard: None,
            keys: KeyHold::new(admitted.keys.clone()),
        })
    }

    fn add(&mut self, c: &Counts, q: Option<&Qualities>) {
        if let Some(r) = &mut self.receipt {
            r.counts.merge(c);
            if let Some(q) = q {
                r.quality.get_or_insert_with(Qualities::default).merge(q);
            }
        }
    }

    fn finish(&mut self, outcome: &'static str) -> Option<Receipt> {
        let mut r = self.receipt.take()?;
        r.outcome = outcome.to_owned();
        r.records = r.counts.total();
        r.ok = r.counts.ok();
        r.rejected = r.counts.rejected();
        r.bytes = self.bytes_read.load(Ordering::Relaxed);
        r.ended = now_rfc3339();
        r.seconds = self.clock.elapsed().as_secs_f64();
        let swept = self.guard.as_ref().and_then(|g| g.swept());
        r.guard = match swept {
            Some(_) => Some("sweep_suspected".to_owned()),
            None => self
                .guard
                .as_ref()
                .and_then(|g| g.tripped())
                .map(str::to_owned),
        };
        r.sweep = swept.map(|(rule, f)| crate::receipt::SweepReport {
            rule: rule.name().to_owned(),
            lines: f.lines,
            implausible: f.implausible,
            most_orders: u64::from(f.most_orders),
        });
        let seq = self.state.log(
            Event::BatchEnd {
                batch: self.batch.clone(),
                operation: Term::from(self.op_name),
                purpose: self.purpose.clone(),
                outcome: Term::from(outcome),
                generation: r.generation,
                records: r.records,
                counts: r.counts,
                bytes: r.bytes,
                seconds: r.seconds,
                reason: self.reason.map(|a| Term::from(a.reason())),
                inputs_erased: true,
            },
            Some(&self.id),
        );
        r.log_seq = seq?;
        super::metrics::batch_ended(&r);
        r.ceremony_id = self.state.record().ceremony_id().to_string();
        r.signature = String::new();
        let unsigned = serde_json::to_vec(&r).ok()?;
        r.signature = self
            .state
            .audit
            .sign(&crate::audit::receipt_message(&unsigned))
            .unwrap_or_default();
        // Logged and signed: a seal or stop waiting on the keys may go on.
        self.keys.release();
        Some(r)
    }

    /// Logs the end and stores the receipt before the last byte leaves; if the
    /// log cannot be written, the response ends in error (no receipt).
    fn complete(&mut self) -> std::io::Result<()> {
        let result = self.result.take();
        match self.finish("completed") {
            Some(r) => {
                self.state.receipts.store(r);
            }
            None => {
                // The result (if any) is dropped unpublished with its
                // partial file: nothing fetchable without a `batch_end`.
                return Err(std::io::Error::other(
                    "the traceability log cannot be written",
                ));
            }
        }
        // A project's table is published only once its batch is logged.
        if let Some((project, file)) = result {
            if let Err(e) = file.finish() {
                tracing::error!(error = %e, "a project result could not be completed");
                self.state.log(
                    Event::ProjectResultErased {
                        project: ProjectName::of_project(&project),
                        batch: self.batch.clone(),
                        reason: Term::from("write_failed"),
                    },
                    Some(&self.id),
                );
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Run {
    /// Appends the matching body's lines of a chunk to the result file.
    fn write_result(&mut self, lines: &[u8]) -> std::io::Result<()> {
        match &mut self.result {
            Some((_, file)) => file.write(lines),
            None => Ok(()),
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some((project, file)) = self.result.take() {
            // Its partial file goes with it.
            drop(file);
            self.state.log(
                Event::ProjectResultErased {
                    project: ProjectName::of_project(&project),
                    batch: self.batch.clone(),
                    reason: Term::from("batch_aborted"),
                },
                Some(&self.id),
            );
        }
        if self.receipt.is_some() {
            // Dropped before its end with no reason known: the response
            // stream went with the connection (the client left, or stopped
            // taking the answer past the write timeout).
            self.reason.get_or_insert(Abort::ClientGone);
            // An aborted batch has a receipt too (§4: every batch does).
            if let Some(r) = self.finish("aborted") {
                self.state.receipts.store(r);
            }
        }
    }
}
