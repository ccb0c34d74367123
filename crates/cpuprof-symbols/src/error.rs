//! The one error type of this crate: every message names the file or process it concerns.

use std::path::PathBuf;

/// What can go wrong while reading libraries or process maps.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or mapped.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not an ELF object this crate understands.
    #[error("cannot parse {path} as ELF: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
}
