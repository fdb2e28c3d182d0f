//! The answer file, written behind the connection by a thread of its own,
//! around the page cache when the file system allows it.
//!
//! An answer is three times its batch (7.7 GB for 100 million rows). Written
//! through the page cache, every page of it is a new page of the cache to
//! find, fill and later write back. On the project's virtual machine, once
//! the cache held other files (a build's), that cost more than the rest of
//! the client's work: 10 million rows took 1.7-2.1 s end to end, against
//! 1.3 s with the cache emptied first (benches/README.md). Whole blocks are
//! written with `O_DIRECT` instead, from a few aligned buffers used over and
//! over; the last part of a block, which `O_DIRECT` cannot write, goes
//! through an ordinary handle on the same file. Where `O_DIRECT` is refused
//! (tmpfs, some network file systems), every part goes through the ordinary
//! handle, the same way.
//!
//! The writing thread owns the disk's waits, so that the client's one
//! thread goes on reading and decrypting the answer meanwhile; it waits
//! only when the disk is more than three parts behind. The early fsyncs run
//! on a thread of their own, so that the writing goes on meanwhile.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use zeroize::Zeroize;

/// Bytes a buffer holds; a multiple of any block size `O_DIRECT` asks for.
const PART: usize = 1 << 20;
/// Alignment of a buffer's start for `O_DIRECT` (4 KiB, the largest logical
/// block size in use).
const ALIGN: usize = 4096;
/// Buffers in all: one being filled, the others written or waiting.
const BUFFERS: usize = 4;

/// A buffer of [`PART`] bytes whose start is aligned to [`ALIGN`]: a larger
/// block, the aligned part of it used (no `unsafe` allocation needed).
struct Part {
    block: Vec<u8>,
    start: usize,
    len: usize,
}

impl Part {
    fn new() -> Self {
        let block = vec![0u8; PART + ALIGN];
        let start = block.as_ptr().align_offset(ALIGN);
        Self {
            block,
            start,
            len: 0,
        }
    }

    fn room(&mut self) -> &mut [u8] {
        &mut self.block[self.start + self.len..self.start + PART]
    }

    fn filled(&self) -> &[u8] {
        &self.block[self.start..self.start + self.len]
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        // It held codes.
        self.block.zeroize();
    }
}

/// What the writing thread is asked to do.
enum Order {
    /// Write this part at the next offset.
    Write(Part),
    /// Write this last part, sync everything to disk, and end.
    Finish(Part),
}

/// The answer file being written.
pub(crate) struct AnswerOut {
    filling: Option<Part>,
    orders: Option<mpsc::SyncSender<Order>>,
    spare: mpsc::Receiver<Part>,
    writer: Option<std::thread::JoinHandle<io::Result<u32>>>,
    /// Set when the answer is given up: the parts still queued are dropped
    /// unwritten.
    given_up: Arc<AtomicBool>,
}

impl AnswerOut {
    /// Starts writing to `file`, just created at `path`; the file is synced
    /// to disk every `every` bytes as it fills (one sync at a time, on a
    /// thread of its own, covering the parts written before it), and
    /// wholly at the end.
    pub(crate) fn new(file: File, path: &Path, every: u64) -> io::Result<Self> {
        let direct = open_direct(path, &file).map(|d| Box::new(d) as Box<dyn Direct>);
        Self::start(file, direct, every)
    }

    fn start(file: File, direct: Option<Box<dyn Direct>>, every: u64) -> io::Result<Self> {
        let (orders, todo) = mpsc::sync_channel::<Order>(BUFFERS - 1);
        let (give_back, spare) = mpsc::sync_channel::<Part>(BUFFERS);
        for _ in 1..BUFFERS {
            give_back
                .send(Part::new())
                .expect("the receiver is here and has room");
        }
        let given_up = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&given_up);
        let writer = std::thread::Builder::new()
            .name("answer-file".into())
            .spawn(move || {
                let queue = Queue {
                    todo: &todo,
                    give_back: &give_back,
                    given_up: &stop,
                };
                write_parts(&file, direct.as_deref(), &queue, every)
            })?;
        Ok(Self {
            filling: Some(Part::new()),
            orders: Some(orders),
            spare,
            writer: Some(writer),
            given_up,
        })
    }

    /// Appends `data`, handing each full part to the writing thread; waits
    /// for a free part when the disk is more than three parts behind.
    pub(crate) fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let part = self.filling.as_mut().expect("a part until the end");
            let room = part.room();
            let n = room.len().min(data.len());
            room[..n].copy_from_slice(&data[..n]);
            part.len += n;
            data = &data[n..];
            if part.len == PART {
                let full = self.filling.take().expect("just filled");
                self.send(Order::Write(full))?;
                let mut next = match self.spare.recv() {
                    Ok(p) => p,
                    Err(_) => return Err(self.failure()),
                };
                next.len = 0;
                self.filling = Some(next);
            }
        }
        Ok(())
    }

    /// Writes what is left, syncs the whole file to disk and ends the
    /// writing thread; the number of syncs made while the file filled.
    pub(crate) fn finish(mut self) -> io::Result<u32> {
        let last = self.filling.take().expect("a part until the end");
        self.send(Order::Finish(last))?;
        self.orders = None;
        self.join()
    }

    fn send(&mut self, order: Order) -> io::Result<()> {
        let sent = self
            .orders
            .as_ref()
            .expect("orders until the end")
            .send(order);
        match sent {
            Ok(()) => Ok(()),
            Err(_) => Err(self.failure()),
        }
    }

    /// Why the writing thread stopped early.
    fn failure(&mut self) -> io::Error {
        self.orders = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::other("the answer's writing thread stopped"),
        }
    }

    fn join(&mut self) -> io::Result<u32> {
        match self.writer.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => Err(io::Error::other("the answer's writing thread stopped")),
        }
    }
}

impl Drop for AnswerOut {
    /// An answer given up: the writing thread ends after the part it is
    /// writing, and the parts still queued are dropped (and wiped) unwritten.
    fn drop(&mut self) {
        self.given_up.store(true, Ordering::Relaxed);
        self.orders = None;
        // Its outcome no longer matters, nor a panic of its (not raised
        // again here, where it could abort the process).
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Where whole parts are written around the page cache: a handle opened with
/// `O_DIRECT` (and, in the tests, a file system that takes the flag and then
/// refuses a write, which none here does).
trait Direct: Send {
    fn write_part(&self, buf: &[u8], offset: u64) -> io::Result<()>;
}

impl Direct for File {
    fn write_part(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }
}

/// A second handle on `file`, just created at `path`, that writes around
/// the page cache, if the file system allows it. Opened by name, so checked
/// to be the same file (a link put in its place meanwhile is not followed,
/// and another file there is not written to).
#[cfg(target_os = "linux")]
fn open_direct(path: &Path, file: &File) -> Option<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let direct = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let (a, b) = (file.metadata().ok()?, direct.metadata().ok()?);
    (a.dev() == b.dev() && a.ino() == b.ino()).then_some(direct)
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _file: &File) -> Option<File> {
    None
}

/// The writing thread's side of the channels.
struct Queue<'a> {
    todo: &'a mpsc::Receiver<Order>,
    give_back: &'a mpsc::SyncSender<Part>,
    given_up: &'a AtomicBool,
}

/// The writing thread: each part at the next offset, whole parts through
/// `direct` when there is one; a sync on a thread of its own every `every`
/// bytes (one at a time); at the end, the last part and a sync of the whole
/// file.
fn write_parts(
    file: &File,
    mut direct: Option<&dyn Direct>,
    queue: &Queue<'_>,
    every: u64,
) -> io::Result<u32> {
    let mut offset = 0u64;
    let mut unsynced = 0u64;
    let mut syncs = 0u32;
    let mut syncing: Option<std::thread::JoinHandle<io::Result<()>>> = None;
    // The client gone (the sender of orders dropped, the answer given up):
    // the thread ends without an error of its own.
    while let Ok(order) = queue.todo.recv() {
        if queue.given_up.load(Ordering::Relaxed) {
            break;
        }
        let (part, last) = match order {
            Order::Write(p) => (p, false),
            Order::Finish(p) => (p, true),
        };
        let bytes = part.filled();
        match direct.filter(|_| bytes.len() == PART) {
            Some(d) => match d.write_part(bytes, offset) {
                Ok(()) => {}
                // Refused after all (a file system that takes the flag
                // but not the write): this part and the next go through
                // the page cache.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    direct = None;
                    file.write_all_at(bytes, offset)?;
                }
                Err(e) => return Err(e),
            },
            None => file.write_all_at(bytes, offset)?,
        }
        offset += bytes.len() as u64;
        unsynced += bytes.len() as u64;
        // An early sync that failed fails the answer as soon as it ends:
        // the kernel reports a failed write-back once.
        if let Some(done) = syncing.take_if(|s| last || s.is_finished()) {
            joined(done)?;
        }
        if last {
            file.sync_all()?;
            return Ok(syncs);
        }
        if unsynced >= every && syncing.is_none() {
            let handle = file.try_clone()?;
            syncing = Some(
                std::thread::Builder::new()
                    .name("answer-sync".into())
                    .spawn(move || handle.sync_data())?,
            );
            unsynced = 0;
            syncs += 1;
        }
        // The client may have stopped taking parts back: it is going.
        let _ = queue.give_back.try_send(part);
    }
    if let Some(done) = syncing {
        let _ = done.join();
    }
    Ok(syncs)
}

/// The outcome of an early sync.
fn joined(done: std::thread::JoinHandle<io::Result<()>>) -> io::Result<()> {
    match done.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Bytes in pieces of random lengths, as frames come.
    fn pieces(total: usize, seed: u64) -> (Vec<u8>, Vec<usize>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data: Vec<u8> = (0..total).map(|_| rng.gen()).collect();
        let mut cuts = Vec::new();
        let mut left = total;
        while left > 0 {
            let n = rng.gen_range(1..=left.min(3 * PART / 2));
            cuts.push(n);
            left -= n;
        }
        (data, cuts)
    }

    #[test]
    fn every_byte_lands_in_order_whatever_the_pieces_and_the_tail() {
        let tmp = tempfile::tempdir().unwrap();
        // Empty, less than a part, parts and a tail, whole parts exactly.
        for (i, total) in [0, 1000, 5 * PART + 4097, 3 * PART].into_iter().enumerate() {
            let path = tmp.path().join(format!("answer-{i}"));
            let (data, cuts) = pieces(total, i as u64);
            let mut out =
                AnswerOut::new(File::create(&path).unwrap(), &path, 2 * PART as u64).unwrap();
            let mut at = 0;
            for n in cuts {
                out.write_all(&data[at..at + n]).unwrap();
                at += n;
            }
            let syncs = out.finish().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "{total} bytes");
            // A sync after two parts written, and after every two more when
            // the one before has ended (one at a time), the last part aside.
            let most = (total / PART) as u32 / 2;
            assert!(
                syncs <= most && syncs >= most.min(1),
                "{syncs} syncs, {total} bytes"
            );
        }
    }

    #[test]
    fn without_o_direct_every_part_goes_through_the_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("answer");
        let (data, cuts) = pieces(3 * PART + 12_345, 7);
        let mut out = AnswerOut::start(File::create(&path).unwrap(), None, PART as u64).unwrap();
        let mut at = 0;
        for n in cuts {
            out.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        let syncs = out.finish().unwrap();
        assert!(
            (1..=3).contains(&syncs),
            "{syncs} syncs: one a part at most, one at a time"
        );
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }

    /// A direct handle on a file system that takes `O_DIRECT` at the open and
    /// then refuses a write with `EINVAL`, from its `refuse_from`-th part on.
    struct RefusingMidway {
        file: File,
        refuse_from: usize,
        calls: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl Direct for RefusingMidway {
        fn write_part(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            if self.calls.fetch_add(1, Ordering::Relaxed) >= self.refuse_from {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.file.write_all_at(buf, offset)
        }
    }

    #[test]
    fn a_direct_write_refused_midway_sends_that_part_and_the_rest_through_the_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("answer");
        let file = File::create(&path).unwrap();
        // A real direct handle on the file where the file system allows it,
        // an ordinary one elsewhere: the fallback is the same.
        let direct = open_direct(&path, &file)
            .unwrap_or_else(|| File::options().write(true).open(&path).unwrap());
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let refusing = RefusingMidway {
            file: direct,
            refuse_from: 2,
            calls: Arc::clone(&calls),
        };
        let (data, cuts) = pieces(6 * PART + 777, 11);
        let mut out = AnswerOut::start(file, Some(Box::new(refusing)), u64::MAX).unwrap();
        let mut at = 0;
        for n in cuts {
            out.write_all(&data[at..at + n]).unwrap();
            at += n;
        }
        out.finish().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // Two parts went direct, the third was refused, and the direct
        // handle was not tried again.
        assert_eq!(calls.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_write_that_fails_fails_the_answer_and_a_dropped_answer_stops() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("answer");
        File::create(&path).unwrap();
        // A handle that cannot write: the last part fails through it.
        let read_only = File::open(&path).unwrap();
        let mut out = AnswerOut::new(read_only, &path, u64::MAX).unwrap();
        out.write_all(&[b'x'; 100]).unwrap();
        assert!(out.finish().is_err());
        // Given up half-way: the writing thread ends, nothing hangs.
        let path = tmp.path().join("given-up");
        let mut out = AnswerOut::new(File::create(&path).unwrap(), &path, u64::MAX).unwrap();
        out.write_all(&vec![b'y'; 2 * PART + 10]).unwrap();
        drop(out);
    }
}
