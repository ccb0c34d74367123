//! The saved profile file (`.cpuprof`): gzip-compressed JSON of a versioned envelope.
//!
//! ```text
//! gzip( {"format": "cpuprof-profile", "version": 1, "profile": { ...Profile... }} )
//! ```
//!
//! Gzip because the CPU series and stack tables are repetitive (a 10 s two-process recording
//! is a few tens of KiB); JSON inside so that `zcat profile.cpuprof | jq` works and other
//! tools can read it without our code. `version` rises whenever a field changes meaning;
//! readers refuse versions they do not know instead of guessing. See `docs/profile-format.md`.

use std::io::{BufReader, BufWriter, Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use crate::profile::Profile;

/// The `format` value of every profile file.
pub const FORMAT: &str = "cpuprof-profile";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Why a profile file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is not gzip or not a cpuprof profile.
    #[error("not a cpuprof profile ({0})")]
    Foreign(String),
    /// The file is a cpuprof profile of another version.
    #[error(
        "profile format version {0} is not supported by this cpuprof (it reads version {VERSION})"
    )]
    Version(u32),
    /// The file is a cpuprof profile but damaged.
    #[error("the profile is corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: &'static str,
    version: u32,
    profile: &'a Profile,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    profile: Profile,
}

/// Writes `profile` in the file format.
pub fn write(profile: &Profile, out: impl Write) -> Result<(), FileError> {
    let mut gz = GzEncoder::new(BufWriter::new(out), Compression::new(6));
    // serde_json writes a few bytes at a time: buffered, the compressor runs on large blocks
    // (unbuffered, saving 1000 threads' 5 s took 3 s).
    let mut json = BufWriter::with_capacity(1 << 16, &mut gz);
    serde_json::to_writer(
        &mut json,
        &EnvelopeOut {
            format: FORMAT,
            version: VERSION,
            profile,
        },
    )
    .map_err(std::io::Error::other)?;
    json.flush()?;
    drop(json);
    gz.finish()?.flush()?;
    Ok(())
}

/// Reads a profile written by [`write`].
pub fn read(input: impl Read) -> Result<Profile, FileError> {
    let mut r = BufReader::new(input);
    let mut magic = [0u8; 2];
    if r.read_exact(&mut magic).is_err() || magic != [0x1f, 0x8b] {
        return Err(FileError::Foreign("it is not gzip-compressed".into()));
    }
    let mut json = Vec::new();
    GzDecoder::new(magic.chain(r))
        .read_to_end(&mut json)
        .map_err(|e| FileError::Corrupt(format!("decompression failed: {e}")))?;
    let header: Header = serde_json::from_slice(&json)
        .map_err(|_| FileError::Foreign("no cpuprof-profile header".into()))?;
    if header.format != FORMAT {
        return Err(FileError::Foreign(format!(
            "its format is {:?}",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(FileError::Version(header.version));
    }
    let env: EnvelopeIn =
        serde_json::from_slice(&json).map_err(|e| FileError::Corrupt(e.to_string()))?;
    env.profile.validate().map_err(FileError::Corrupt)?;
    Ok(env.profile)
}

/// Writes `profile` to `path`.
pub fn save(profile: &Profile, path: &std::path::Path) -> Result<(), FileError> {
    write(profile, std::fs::File::create(path)?)
}

/// Reads the profile at `path`.
pub fn load(path: &std::path::Path) -> Result<Profile, FileError> {
    read(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, Machine, Meta, ProfileBuilder, ThreadPoint};

    fn sample_profile() -> Profile {
        let mut b = ProfileBuilder::new(
            Meta::new(vec!["a".into()]),
            Machine {
                online_cpus: 2,
                ..Default::default()
            },
            0,
        );
        b.handle(Event::ThreadPoint {
            pid: 5,
            tid: 6,
            name: "w".into(),
            point: ThreadPoint {
                t: 10,
                cpu_ns: 99,
                ..Default::default()
            },
        });
        b.finish(100)
    }

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        write(&sample_profile(), &mut buf).unwrap();
        let back = read(&buf[..]).unwrap();
        assert_eq!(back.processes[0].threads[0].cpu_ns, 99);
        assert_eq!(back.machine.online_cpus, 2);
    }

    #[test]
    fn foreign_corrupt_and_future_files_are_refused() {
        assert!(matches!(
            read(&b"hello world"[..]),
            Err(FileError::Foreign(_))
        ));
        assert!(matches!(read(&b""[..]), Err(FileError::Foreign(_))));
        let mut buf = Vec::new();
        write(&sample_profile(), &mut buf).unwrap();
        buf.truncate(buf.len() / 2);
        assert!(matches!(read(&buf[..]), Err(FileError::Corrupt(_))));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(br#"{"format":"cpuprof-profile","version":99,"profile":{}}"#)
            .unwrap();
        assert!(matches!(
            read(&gz.finish().unwrap()[..]),
            Err(FileError::Version(99))
        ));
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(br#"{"a":1}"#).unwrap();
        assert!(matches!(
            read(&gz.finish().unwrap()[..]),
            Err(FileError::Foreign(_))
        ));
    }
}
