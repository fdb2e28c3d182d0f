//! Research projects' results (DESIGN §4, §5): the `index,cspens` table of
//! a project batch, held on disk **only encrypted to the project's matching
//! body** (age, X25519: the service writes it and cannot read it back), until
//! the matching body fetches it once (`GET /v1/projects/{id}/results/{batch}`,
//! matcher role, the certificate the project's terms name) or its window
//! closes (`result_window_seconds`). Either way it is then erased.
//!
//! Files, in `results_dir/PROJECT/`: `BATCH.age` (the table, once whole),
//! `BATCH.json` (public: project, batch, the matching body's certificate
//! fingerprint, when it was written), `BATCH.age.partial` while written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::batch::project::MATCHER_HEADER;
use crate::config::Role;
use crate::event::{BatchId, Event, ProjectName, Term};
use crate::tls::PeerIdentity;

/// What a result's public side says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultMeta {
    project: String,
    batch: String,
    matcher_fingerprint: String,
    written: String,
}

fn project_dir(root: &Path, project: &str) -> PathBuf {
    root.join(project)
}

/// A project batch's table being written, encrypted as it comes. Dropped
/// unfinished (the batch aborted), its partial file is removed.
pub(super) struct ResultFile {
    project: String,
    batch: String,
    dir: PathBuf,
    partial: PathBuf,
    matcher_fingerprint: String,
    writer: Option<age::stream::StreamWriter<std::io::BufWriter<std::fs::File>>>,
}

impl ResultFile {
    /// Starts the encrypted table of `batch` of `project`.
    pub(super) fn create(
        root: &Path,
        project: &str,
        batch: &str,
        recipient: &str,
        matcher_fingerprint: &str,
    ) -> std::io::Result<Self> {
        let recipient: age::x25519::Recipient = recipient
            .parse()
            .map_err(|_| std::io::Error::other("the project's recipient does not parse"))?;
        let dir = project_dir(root, project);
        create_private_dir(root)?;
        create_private_dir(&dir)?;
        let partial = dir.join(format!("{batch}.age.partial"));
        let file = crate::files::create_new(&partial, 0o600)?;
        let mut me = Self {
            project: project.to_owned(),
            batch: batch.to_owned(),
            dir,
            partial,
            matcher_fingerprint: matcher_fingerprint.to_owned(),
            writer: None,
        };
        let encryptor =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .map_err(std::io::Error::other)?;
        let mut writer = encryptor.wrap_output(std::io::BufWriter::with_capacity(1 << 20, file))?;
        writer.write_all(MATCHER_HEADER)?;
        me.writer = Some(writer);
        Ok(me)
    }

    /// Appends lines of the table (encrypted before they reach the disk).
    pub(super) fn write(&mut self, lines: &[u8]) -> std::io::Result<()> {
        match &mut self.writer {
            Some(w) => w.write_all(lines),
            None => Err(std::io::Error::other("the result file is closed")),
        }
    }

    /// Completes the file: the age stream closed, synced, its public side
    /// written, then renamed to its final name (by hard link: never over a
    /// file). On any failure nothing of it is left.
    pub(super) fn finish(mut self) -> std::io::Result<()> {
        let meta_path = self.dir.join(format!("{}.json", self.batch));
        let done = self.dir.join(format!("{}.age", self.batch));
        let result = self.complete(&meta_path, &done);
        if result.is_err() {
            for p in [&self.partial, &meta_path, &done] {
                let _ = std::fs::remove_file(p);
            }
        }
        result
    }

    fn complete(&mut self, meta_path: &Path, done: &Path) -> std::io::Result<()> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| std::io::Error::other("the result file is closed"))?;
        let file = writer.finish()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let meta = ResultMeta {
            project: self.project.clone(),
            batch: self.batch.clone(),
            matcher_fingerprint: self.matcher_fingerprint.clone(),
            written: crate::receipt::now_rfc3339(),
        };
        crate::files::write_new(
            meta_path,
            &serde_json::to_vec(&meta).map_err(std::io::Error::other)?,
            0o600,
        )?;
        std::fs::hard_link(&self.partial, done)?;
        std::fs::remove_file(&self.partial)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        Ok(())
    }
}

impl Drop for ResultFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// `GET /v1/projects/{id}/results/{batch}`: the encrypted table, once, to
/// the matching body the project's terms name; erased as it is handed over.
pub(super) async fn fetch(
    State(state): State<Arc<AppState>>,
    Extension(id): Extension<PeerIdentity>,
    UrlPath((project, batch)): UrlPath<(String, String)>,
) -> Result<Response, ApiError> {
    state.require(&id, Role::Matcher)?;
    // Both are names the service made: anything else is no result (and
    // never reaches a path).
    if !crate::seal::quorum::is_valid_project_id(&project)
        || !crate::event::BatchId::is_drawn_form(&batch)
    {
        return Err(ApiError::ResultGone);
    }
    let dir = project_dir(&state.config.results_dir(), &project);
    let meta_path = dir.join(format!("{batch}.json"));
    let meta: ResultMeta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(ApiError::ResultGone)?;
    if !meta
        .matcher_fingerprint
        .eq_ignore_ascii_case(&id.fingerprint)
    {
        state.log(
            Event::RequestRefused {
                operation: Some(Term::from("fetch_result")),
                reason: Term::from("not_for_this_project"),
                role: None,
            },
            Some(&id),
        );
        return Err(ApiError::NotForThisProject(
            "this certificate is not the matching body of this project",
        ));
    }
    // Taken before it is sent: a second fetch finds nothing, even while
    // the first is under way. Erased once wholly sent; put back if the
    // transfer breaks, so that a broken connection does not lose it.
    let file_path = dir.join(format!("{batch}.age"));
    let taken = dir.join(format!("{batch}.age.fetching"));
    std::fs::rename(&file_path, &taken).map_err(|_| ApiError::ResultGone)?;
    let file = match tokio::fs::File::open(&taken).await {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(error = %e, "a project result could not be opened");
            let _ = std::fs::rename(&taken, &file_path);
            return Err(ApiError::Internal);
        }
    };
    // Logged before the first byte leaves (age hands each checked chunk of
    // a stream to its reader: a transfer cut short still gives most of the
    // table). A log that cannot take the record: nothing is sent, and the
    // result is put back. A transfer that breaks off after this record puts
    // the result back too, and the next fetch is logged again.
    let bytes = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let logged = state.log(
        Event::ProjectResultFetched {
            project: ProjectName::of_project(&project),
            batch: BatchId::of_drawn(&batch),
            bytes,
        },
        Some(&id),
    );
    if logged.is_none() {
        let _ = std::fs::rename(&taken, &file_path);
        return Err(ApiError::AuditUnavailable);
    }
    let handover = Handover {
        taken,
        back: file_path,
        meta: meta_path,
        done: false,
    };
    // Erased once the last chunk is read, just before it leaves.
    let chunks = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    let stream = futures_util::stream::unfold(
        (chunks, Some(handover)),
        |(mut chunks, mut handover)| async move {
            handover.as_ref()?;
            match futures_util::StreamExt::next(&mut chunks).await {
                Some(Ok(b)) => Some((Ok(b), (chunks, handover))),
                Some(Err(e)) => Some((Err(e), (chunks, None))),
                None => {
                    if let Some(h) = handover.take() {
                        h.complete();
                    }
                    None
                }
            }
        },
    );
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// A result being handed over (its hand-over logged): erased once wholly
/// read, put back (for another try) if the transfer stops before.
struct Handover {
    taken: PathBuf,
    back: PathBuf,
    meta: PathBuf,
    done: bool,
}

impl Handover {
    fn complete(mut self) {
        self.done = true;
        let _ = std::fs::remove_file(&self.taken);
        let _ = std::fs::remove_file(&self.meta);
    }
}

impl Drop for Handover {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!("a project result's transfer broke off: kept for another fetch");
            let _ = std::fs::rename(&self.taken, &self.back);
        }
    }
}

/// At start, no batch is running and no fetch under way: what a crash left
/// half-written (`.partial`) is erased, and a result whose handing over a
/// crash cut off (`.fetching`) is put back for another fetch.
pub(super) fn erase_leftovers(state: &AppState) {
    let Ok(projects) = std::fs::read_dir(state.config.results_dir()) else {
        return;
    };
    for dir in projects.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".age.partial") {
                tracing::warn!("a project result half-written at a crash was erased");
                let _ = std::fs::remove_file(&path);
            } else if let Some(stem) = name.strip_suffix(".fetching") {
                // A fetch cut off by a crash: kept for another fetch.
                let _ = std::fs::rename(&path, path.with_file_name(stem));
            }
        }
    }
}

/// Erases the results whose window has closed; housekeeping calls it.
pub(super) fn erase_expired(state: &AppState) {
    let root = state.config.results_dir();
    let window = std::time::Duration::from_secs(state.config.result_window_seconds);
    let Ok(projects) = std::fs::read_dir(&root) else {
        return;
    };
    for dir in projects.flatten() {
        let Ok(files) = std::fs::read_dir(dir.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(batch) = name.strip_suffix(".age") else {
                continue;
            };
            let old = f
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age >= window);
            if !old {
                continue;
            }
            let project = dir.file_name().to_string_lossy().into_owned();
            let _ = std::fs::remove_file(&path);
            let _ = std::fs::remove_file(path.with_extension("json"));
            tracing::warn!(%project, "a project result was erased unfetched: its window closed");
            state.log(
                Event::ProjectResultErased {
                    project: ProjectName::of_project(&project),
                    batch: BatchId::of_drawn(batch),
                    reason: Term::from("window_closed"),
                },
                None,
            );
        }
    }
}
