//! Turning a perf sample (user registers + a copy of the user stack) into named frames.
//!
//! Code without frame pointers (CPython, OpenBLAS, libgomp) can only be unwound with the
//! DWARF call-frame information of each library (`.eh_frame`, `.eh_frame_hdr`,
//! `.debug_frame`). [`Symbolizer`] keeps, per process, the executable mappings (from perf
//! `MMAP2` records and `/proc/PID/maps`) and a `framehop` unwinder fed with the unwind sections
//! of each mapped file; it walks the copied stack and names each address from the file's
//! `.symtab`, then `.dynsym`, demangled (Rust, C++). An address without a symbol keeps its
//! library and offset (`libopenblas.so.0+0x1a2b3c`) and is never dropped.
//!
//! Libraries are parsed once and shared by every process that maps them (keyed by device +
//! inode, else path); nothing is re-read per sample.
//!
//! ```no_run
//! use cpuprof_symbols::{Regs, Symbolizer};
//! let mut s = Symbolizer::new();
//! let stack = [0u8; 64];
//! let frames = s.unwind(1234, 1234, Regs { ip: 0x401000, sp: 0x7ffc0000, bp: 0 }, &stack);
//! for f in frames { println!("{}", f.name); }
//! ```
#![deny(missing_docs)]

mod address_space;
mod demangle;
mod error;
mod interpreted;
mod library;
mod live_stack;
pub mod maps;
mod scan;
mod symbol_table;
mod symbolizer;

pub use demangle::demangle;
pub use error::Error;
pub use interpreted::InterpretedPids;
pub use library::Library;
pub use maps::Mapping;
pub use symbol_table::SymbolTable;
pub use symbolizer::{Regs, Symbolizer, SymbolizerStats};
