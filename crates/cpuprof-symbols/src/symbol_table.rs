//! Address → function name within one file, by binary search over sorted symbols.
//!
//! Built once per library from `.symtab` and `.dynsym` (see [`crate::Library`]). Symbols
//! without a size (common in hand-written assembly, e.g. OpenBLAS kernels) extend to the
//! next symbol, capped at the end of their section.

/// Sorted function symbols of one file, addresses as stated in the file (SVMAs). The names sit
/// in one buffer: a large library has tens of thousands of symbols, and one allocation each was
/// most of the time it took to build its table.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SymbolTable {
    starts: Vec<u64>,
    ends: Vec<u64>,
    /// Where each name ends in `text`.
    name_ends: Vec<usize>,
    /// The names as the file has them; a name is checked to be UTF-8 when it is looked up
    /// (a check of every name was a sixth of the time the table took to build).
    text: Vec<u8>,
}

impl SymbolTable {
    /// Builds a table from `(address, size, name, section_end)` entries; the first entry of
    /// two at the same address wins (so callers put `.symtab` before `.dynsym`).
    pub fn new<S: AsRef<[u8]>>(entries: Vec<(u64, u64, S, u64)>) -> Self {
        // Sorted as (address, position) pairs: the first of each address is the caller's
        // preference, and sorting 16-byte keys without stability is a third of the time of
        // sorting the entries themselves (a BLAS library has ~25 000 of them).
        let mut order: Vec<(u64, u32)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.0, i as u32))
            .collect();
        order.sort_unstable();
        order.dedup_by_key(|e| e.0);
        let mut t = SymbolTable {
            starts: Vec::with_capacity(order.len()),
            ends: Vec::with_capacity(order.len()),
            name_ends: Vec::with_capacity(order.len()),
            text: Vec::with_capacity(
                order
                    .iter()
                    .map(|&(_, i)| entries[i as usize].2.as_ref().len())
                    .sum(),
            ),
        };
        for (k, &(start, i)) in order.iter().enumerate() {
            let (_, size, ref name, section_end) = entries[i as usize];
            let next = order.get(k + 1).map_or(u64::MAX, |e| e.0);
            let end = if size > 0 {
                start + size
            } else {
                next.min(section_end.max(start + 1))
            };
            t.starts.push(start);
            t.ends.push(end);
            t.text.extend_from_slice(name.as_ref());
            t.name_ends.push(t.text.len());
        }
        t
    }

    /// The symbol containing `addr` and `addr`'s offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.starts.partition_point(|&s| s <= addr).checked_sub(1)?;
        let from = i.checked_sub(1).map_or(0, |j| self.name_ends[j]);
        let name = std::str::from_utf8(&self.text[from..self.name_ends[i]]).ok()?;
        (addr < self.ends[i]).then_some((name, addr - self.starts[i]))
    }

    /// The address range of the symbol named `name` (a linear search: for the few symbols
    /// looked up by name once per library).
    pub fn range_of(&self, name: &str) -> Option<std::ops::Range<u64>> {
        let mut from = 0;
        for (i, &end) in self.name_ends.iter().enumerate() {
            if &self.text[from..end] == name.as_bytes() {
                return Some(self.starts[i]..self.ends[i]);
            }
            from = end;
        }
        None
    }

    /// Number of symbols.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// True when the file had no function symbols.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SymbolTable {
        SymbolTable::new(vec![
            (0x2000, 0x10, "b_sized", 0x9000),
            (0x1000, 0x100, "a_symtab", 0x9000),
            (0x1000, 0x100, "a_dynsym", 0x9000),
            (0x3000, 0, "c_unsized", 0x9000),
            (0x5000, 0, "d_last", 0x6000),
        ])
    }

    #[test]
    fn finds_containing_symbol_and_offset() {
        let t = table();
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup(0x1000), Some(("a_symtab", 0)));
        assert_eq!(t.lookup(0x10ff), Some(("a_symtab", 0xff)));
        assert_eq!(t.lookup(0x2008), Some(("b_sized", 8)));
    }

    #[test]
    fn symbols_are_found_by_name() {
        let t = table();
        assert_eq!(t.range_of("b_sized"), Some(0x2000..0x2010));
        assert_eq!(t.range_of("c_unsized"), Some(0x3000..0x5000));
        assert_eq!(t.range_of("a_dynsym"), None, "the .symtab name won");
        assert_eq!(t.range_of("b_size"), None);
    }

    #[test]
    fn gaps_and_edges_have_no_symbol() {
        let t = table();
        assert_eq!(t.lookup(0xfff), None);
        assert_eq!(t.lookup(0x1100), None);
        assert_eq!(t.lookup(0x2010), None);
        assert_eq!(t.lookup(0x6000), None);
    }

    #[test]
    fn unsized_symbols_reach_the_next_one_or_section_end() {
        let t = table();
        assert_eq!(t.lookup(0x4fff), Some(("c_unsized", 0x1fff)));
        assert_eq!(t.lookup(0x5fff), Some(("d_last", 0xfff)));
    }
}
