//! One executable or shared library, parsed once: its load segments (to turn process
//! addresses into file addresses), its unwind sections (handed to framehop without copying:
//! they stay in the memory-mapped file) and its symbol table — built at the first name looked
//! up in it: a Python program maps dozens of extension modules whose code no sample ever
//! lands in, and building their tables was most of what recording native stacks cost it.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use framehop::ExplicitModuleSectionInfo;
use memmap2::Mmap;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, SymbolKind};

use crate::error::Error;
use crate::symbol_table::SymbolTable;

/// A byte range of a memory-mapped file, as framehop wants section data.
#[derive(Clone)]
pub struct SectionData {
    map: Arc<Mmap>,
    range: Range<usize>,
}

impl Deref for SectionData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map[self.range.clone()]
    }
}

/// A section's stated address range and its bytes in the file.
#[derive(Debug, Clone)]
struct Section {
    svma: Range<u64>,
    file: Range<usize>,
}

/// A `PT_LOAD` segment.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// A parsed ELF file.
pub struct Library {
    path: String,
    map: Arc<Mmap>,
    segments: Vec<Segment>,
    text: Option<Section>,
    got: Option<Section>,
    eh_frame: Option<Section>,
    eh_frame_hdr: Option<Section>,
    debug_frame: Option<Section>,
    plt: Vec<Range<u64>>,
    /// Built on first use ([`Library::symbols`]).
    symbols: OnceLock<SymbolTable>,
    /// [`Library::python_eval`], found on first use.
    python_eval: OnceLock<Option<Range<u64>>>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("symbols", &self.symbols.get().map(SymbolTable::len))
            .finish()
    }
}

impl Library {
    /// Maps and parses the file at `open_path` (e.g. through `/proc/PID/root`); `path` is the
    /// name shown in frames.
    pub fn load(path: &str, open_path: &Path) -> Result<Library, Error> {
        let io = |source| Error::Io {
            path: open_path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(open_path).map_err(io)?;
        // SAFETY: the file is mapped read-only; a library being rewritten in place while we
        // read it would give wrong names, not undefined behaviour we rely on.
        let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(io)?);
        let obj = object::File::parse(&map[..]).map_err(|e| Error::Parse {
            path: open_path.to_path_buf(),
            message: e.to_string(),
        })?;
        let section = |name: &str| {
            let s = obj.section_by_name(name)?;
            let (off, size) = s.file_range().unwrap_or((0, 0));
            Some(Section {
                svma: s.address()..s.address() + s.size(),
                file: off as usize..(off + size) as usize,
            })
        };
        let segments = obj
            .segments()
            .map(|s| {
                let (offset, filesz) = s.file_range();
                Segment {
                    offset,
                    vaddr: s.address(),
                    filesz,
                }
            })
            .collect();
        let lib = Library {
            path: path.to_string(),
            segments,
            text: section(".text"),
            got: section(".got"),
            eh_frame: section(".eh_frame"),
            eh_frame_hdr: section(".eh_frame_hdr"),
            debug_frame: section(".debug_frame"),
            plt: [".plt", ".plt.sec", ".plt.got"]
                .iter()
                .filter_map(|n| section(n).map(|s| s.svma))
                .collect(),
            symbols: OnceLock::new(),
            python_eval: OnceLock::new(),
            map: map.clone(),
        };
        Ok(lib)
    }

    /// The path shown in frames.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The symbol table (the file's own, or its separate debug file's when that has more).
    pub fn symbols(&self) -> &SymbolTable {
        self.symbols.get_or_init(|| {
            let Ok(obj) = object::File::parse(&self.map[..]) else {
                return SymbolTable::new(Vec::<(u64, u64, &[u8], u64)>::new());
            };
            let own = symbols(&obj);
            if own.is_empty() || obj.symbol_table().is_none() {
                if let Some(debug) = separate_debug_symbols(&obj) {
                    if debug.len() > own.len() {
                        return debug;
                    }
                }
            }
            own
        })
    }

    /// The load bias of a mapping of this file at `start` with file offset `offset`:
    /// process address = file address + bias.
    pub fn bias(&self, start: u64, offset: u64) -> u64 {
        // lld packs segments into shared pages: the mapping of the code segment starts on
        // the page where the read-only segment ends. The segment that *starts* on the
        // mapping's first page is the one mapped there.
        let seg = self
            .segments
            .iter()
            .find(|s| s.offset & !0xfff == offset)
            .or_else(|| {
                self.segments
                    .iter()
                    .find(|s| (s.offset & !0xfff) <= offset && offset < s.offset + s.filesz.max(1))
            });
        match seg {
            Some(s) => start.wrapping_sub(s.vaddr.wrapping_add(offset.wrapping_sub(s.offset))),
            None => start.wrapping_sub(offset),
        }
    }

    /// The `n` bytes of code just before file address `svma` (to check that a value found
    /// on the stack is a return address: it must follow a call instruction).
    pub fn code_before(&self, svma: u64, n: u64) -> Option<&[u8]> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.vaddr + n <= svma && svma <= s.vaddr + s.filesz)?;
        let end = (svma - seg.vaddr + seg.offset) as usize;
        self.map.get(end - n as usize..end)
    }

    /// The `n` bytes of code at file address `svma`.
    pub fn code_at(&self, svma: u64, n: u64) -> Option<&[u8]> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.vaddr <= svma && svma + n <= s.vaddr + s.filesz)?;
        let start = (svma - seg.vaddr + seg.offset) as usize;
        self.map.get(start..start + n as usize)
    }

    /// Whether file address `svma` lies in a PLT stub (calls to other libraries go there).
    pub fn in_plt(&self, svma: u64) -> bool {
        self.plt.iter().any(|r| r.contains(&svma))
    }

    /// Where CPython's frame evaluation (`_PyEval_EvalFrameDefault`) is in this file, if it is
    /// an interpreter or a libpython (file addresses).
    pub fn python_eval(&self) -> Option<&Range<u64>> {
        self.python_eval
            .get_or_init(|| {
                let base = self.path.rsplit('/').next().unwrap_or_default();
                (base.starts_with("python") || base.starts_with("libpython"))
                    .then(|| self.symbols().range_of("_PyEval_EvalFrameDefault"))
                    .flatten()
            })
            .as_ref()
    }

    /// The start (file address) of the function containing `svma`, if a symbol covers it.
    pub fn function_start(&self, svma: u64) -> Option<u64> {
        self.symbols().lookup(svma).map(|(_, off)| svma - off)
    }

    /// The unwind sections for a framehop module.
    pub fn section_info(&self) -> ExplicitModuleSectionInfo<SectionData> {
        let data = |s: &Option<Section>| {
            s.as_ref()
                .filter(|s| s.file.end <= self.map.len() && !s.file.is_empty())
                .map(|s| SectionData {
                    map: self.map.clone(),
                    range: s.file.clone(),
                })
        };
        let svma = |s: &Option<Section>| s.as_ref().map(|s| s.svma.clone());
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma: svma(&self.text),
            text: data(&self.text),
            got_svma: svma(&self.got),
            eh_frame_svma: svma(&self.eh_frame),
            eh_frame: data(&self.eh_frame),
            eh_frame_hdr_svma: svma(&self.eh_frame_hdr),
            eh_frame_hdr: data(&self.eh_frame_hdr),
            debug_frame: data(&self.debug_frame),
            stubs_svma: None,
            stub_helper_svma: None,
            unwind_info: None,
            text_segment_svma: None,
            text_segment: None,
        }
    }
}

/// Function symbols from `.symtab`, then `.dynsym` (the first wins at equal addresses).
fn symbols(obj: &object::File) -> SymbolTable {
    match obj {
        object::File::Elf64(elf) => elf_symbols(elf),
        _ => any_symbols(obj),
    }
}

/// [`symbols`] of a 64-bit ELF file, read from its symbol entries as they are: a BLAS library
/// or libpython has 15 000–25 000 of them, and the generic symbol interface (a section
/// lookup and a UTF-8 check each, the names of symbols that are not functions too) took
/// several milliseconds of the recording per library. Same selection: defined `STT_FUNC`
/// symbols with a name and an address.
fn elf_symbols(elf: &object::read::elf::ElfFile64) -> SymbolTable {
    use object::elf::{SHN_LORESERVE, SHN_UNDEF, STT_FUNC};
    use object::read::elf::Sym;
    let endian = elf.endian();
    let sections = elf.elf_section_table();
    // Each section's end, by index (a symbol without a size ends at its section's end).
    let ends: Vec<u64> = sections
        .iter()
        .map(|s| {
            use object::read::elf::SectionHeader;
            s.sh_addr(endian).saturating_add(s.sh_size(endian))
        })
        .collect();
    let mut entries = Vec::new();
    for table in [elf.elf_symbol_table(), elf.elf_dynamic_symbol_table()] {
        let strings = table.strings();
        for sym in table.symbols() {
            let shndx = sym.st_shndx(endian);
            let value = sym.st_value(endian);
            if sym.st_type() != STT_FUNC
                || shndx == SHN_UNDEF
                || shndx >= SHN_LORESERVE
                || value == 0
            {
                continue;
            }
            let Ok(name) = sym.name(endian, strings) else {
                continue;
            };
            if !name.is_empty() {
                let end = ends.get(usize::from(shndx)).copied().unwrap_or(u64::MAX);
                entries.push((value, sym.st_size(endian), name, end));
            }
        }
    }
    SymbolTable::new(entries)
}

/// [`symbols`] through `object`'s generic interface (32-bit ELF, other formats).
fn any_symbols(obj: &object::File) -> SymbolTable {
    let section_end = |sym: &object::Symbol| {
        sym.section_index()
            .and_then(|i| obj.section_by_index(i).ok())
            .map_or(u64::MAX, |s| s.address() + s.size())
    };
    let mut entries = Vec::new();
    for sym in obj.symbols().chain(obj.dynamic_symbols()) {
        if sym.kind() != SymbolKind::Text || !sym.is_definition() || sym.address() == 0 {
            continue;
        }
        if let Ok(name) = sym.name() {
            if !name.is_empty() {
                entries.push((sym.address(), sym.size(), name, section_end(&sym)));
            }
        }
    }
    SymbolTable::new(entries)
}

/// Symbols from `/usr/lib/debug/.build-id/xx/yyyy.debug` when a -dbgsym package is installed.
fn separate_debug_symbols(obj: &object::File) -> Option<SymbolTable> {
    let id = obj.build_id().ok()??;
    if id.len() < 2 {
        return None;
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let path = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    let file = std::fs::File::open(path).ok()?;
    // SAFETY: read-only mapping of a debug file, see `Library::load`.
    let map = unsafe { Mmap::map(&file) }.ok()?;
    let debug = object::File::parse(&map[..]).ok()?;
    Some(symbols(&debug))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files this test process maps: its own executable (Rust, with `.symtab`), libc
    /// (stripped: `.dynsym` only) and whatever else the loader brought in.
    fn mapped_files() -> Vec<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("own maps");
        let mut files: Vec<String> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.starts_with('/'))
            .map(str::to_string)
            .collect();
        files.sort();
        files.dedup();
        files
    }

    #[test]
    fn elf_symbols_are_the_generic_interfaces_selection() {
        let mut compared = 0;
        for path in mapped_files() {
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            // SAFETY: read-only mapping of a file this process maps itself.
            let Ok(map) = (unsafe { Mmap::map(&file) }) else {
                continue;
            };
            let Ok(obj) = object::File::parse(&map[..]) else {
                continue;
            };
            let object::File::Elf64(elf) = &obj else {
                continue;
            };
            let fast = elf_symbols(elf);
            assert_eq!(fast, any_symbols(&obj), "{path}");
            assert!(fast.lookup(0).is_none());
            compared += 1;
        }
        assert!(compared >= 2, "compared {compared} files");
    }
}
