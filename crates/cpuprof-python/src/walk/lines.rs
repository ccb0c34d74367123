//! The line a frame is at, from its code object's line table and its instruction offset.
//!
//! Three formats, as CPython documents them (`Objects/lnotab_notes.txt`, and
//! `InternalDocs/locations.md` for 3.11+):
//! - 3.8, 3.9 `co_lnotab`: pairs (bytecode increment, signed line increment); the line of an
//!   offset is the line after the last pair whose address does not pass it.
//! - 3.10 `co_linetable`: pairs (range length in bytes, signed line delta; -128 = no line), each
//!   range's line the running sum.
//! - 3.11+ location table: entries whose first byte is `1cccclll` — code `cccc`, length
//!   `lll + 1` code units; the code says how the line changes (15 none, 14 long form and 13 no
//!   columns: a signed varint, 10–12 one-line forms: +0..+2, below 10: the same line) and
//!   further bytes (no high bit) carry columns, skipped here.
//!
//! Offsets are in bytes from the first instruction. A negative offset (a frame that has not
//! run its first instruction) is at the function's first line, as in `PyCode_Addr2Line`.

/// Which table format a code object carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// 3.8, 3.9 `co_lnotab`.
    Lnotab,
    /// 3.10 `co_linetable`.
    LineTable310,
    /// 3.11+ location table.
    Locations,
}

impl Format {
    /// The format of CPython 3.`minor`.
    pub fn of(minor: u64) -> Format {
        match minor {
            ..=9 => Format::Lnotab,
            10 => Format::LineTable310,
            _ => Format::Locations,
        }
    }
}

/// The line of byte offset `offset` in a code object starting at `first` with line table
/// `table`; 0 when the instruction has no line.
pub fn line(format: Format, table: &[u8], first: i32, offset: i64) -> i32 {
    if offset < 0 {
        return first;
    }
    match format {
        Format::Lnotab => lnotab(table, first, offset),
        Format::LineTable310 => ranges(table, first, offset, |t, i| {
            let &[len, delta] = t.get(i..i + 2)? else {
                return None;
            };
            let delta = delta as i8;
            let delta = (delta != -128).then_some(i32::from(delta));
            Some((i64::from(len), delta, i + 2))
        }),
        Format::Locations => ranges(table, first, offset, location),
    }
}

fn lnotab(table: &[u8], first: i32, offset: i64) -> i32 {
    let mut line = first;
    let mut addr = 0i64;
    for pair in table.chunks_exact(2) {
        addr += i64::from(pair[0]);
        if addr > offset {
            break;
        }
        line += i32::from(pair[1] as i8);
    }
    line
}

/// Walks a table of ranges: `entry(table, i)` reads the entry at `i` as (length in bytes, line
/// delta or `None` for no line, next index).
fn ranges(
    table: &[u8],
    first: i32,
    offset: i64,
    entry: impl Fn(&[u8], usize) -> Option<(i64, Option<i32>, usize)>,
) -> i32 {
    let mut computed = first;
    let mut end = 0i64;
    let mut i = 0;
    while let Some((len, delta, next)) = entry(table, i) {
        end += len;
        let line = delta.map(|d| {
            computed += d;
            computed
        });
        if offset < end {
            return line.unwrap_or(0);
        }
        i = next;
    }
    0
}

/// One entry of a 3.11+ location table at `i`: (length in bytes, line delta, next entry).
fn location(table: &[u8], i: usize) -> Option<(i64, Option<i32>, usize)> {
    let first = *table.get(i)?;
    if first & 0x80 == 0 {
        return None;
    }
    let code = (first >> 3) & 0x0f;
    let len = i64::from(first & 7) + 1;
    let delta = match code {
        15 => None,
        13 | 14 => Some(svarint(table, i + 1)?),
        10..=12 => Some(i32::from(code) - 10),
        _ => Some(0),
    };
    // Column bytes and the long form's other varints never have the high bit set.
    let next = table[i + 1..]
        .iter()
        .position(|b| b & 0x80 != 0)
        .map_or(table.len(), |p| i + 1 + p);
    Some((len * 2, delta, next))
}

/// A signed varint: 6-bit groups, low first, 0x40 = more follow; the lowest bit is the sign.
fn svarint(table: &[u8], mut i: usize) -> Option<i32> {
    let mut value = 0u32;
    let mut shift = 0;
    loop {
        let b = *table.get(i)?;
        value |= u32::from(b & 0x3f).checked_shl(shift)?;
        if b & 0x40 == 0 {
            break;
        }
        shift += 6;
        i += 1;
    }
    let magnitude = (value >> 1) as i32;
    Some(if value & 1 != 0 {
        -magnitude
    } else {
        magnitude
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lnotab_counts_increments_up_to_the_offset() {
        // 0..6 line 10, 6..10 line 11, 10.. line 9 (a negative increment).
        let t = [6, 1, 4, 0xfe];
        assert_eq!(line(Format::Lnotab, &t, 10, 0), 10);
        assert_eq!(line(Format::Lnotab, &t, 10, 5), 10);
        assert_eq!(line(Format::Lnotab, &t, 10, 6), 11);
        assert_eq!(line(Format::Lnotab, &t, 10, 10), 9);
        assert_eq!(line(Format::Lnotab, &t, 10, -1), 10);
    }

    #[test]
    fn python_3_10_ranges_with_no_line() {
        // [0,4) line 5, [4,6) no line, [6,10) line 7.
        let t = [4, 0, 2, 0x80, 4, 2];
        let f = Format::LineTable310;
        assert_eq!(line(f, &t, 5, 0), 5);
        assert_eq!(line(f, &t, 5, 3), 5);
        assert_eq!(line(f, &t, 5, 4), 0);
        assert_eq!(line(f, &t, 5, 8), 7);
        assert_eq!(line(f, &t, 5, 10), 0);
    }

    #[test]
    fn python_3_11_location_entries() {
        let t = [
            // no columns, +1 (svarint 2), 1 code unit: [0,2) line 11
            0x80 | (13 << 3),
            2,
            // one-line form +2, 2 units, two column bytes: [2,6) line 13
            0x80 | (12 << 3) | 1,
            4,
            8,
            // short form (same line), 1 unit, one column byte: [6,8) line 13
            0x80 | (3 << 3),
            0x11,
            // long form, -3 (svarint 7), end line, columns: [8,10) line 10
            0x80 | (14 << 3),
            7,
            0,
            1,
            2,
            // none: [10,12) no line
            0x80 | (15 << 3),
            // no columns, +70 (svarint 140 = 0b10_001100: 12 | 0x40, then 2): [12,14) line 80
            0x80 | (13 << 3),
            12 | 0x40,
            2,
        ];
        let f = Format::Locations;
        assert_eq!(line(f, &t, 10, 0), 11);
        assert_eq!(line(f, &t, 10, 2), 13);
        assert_eq!(line(f, &t, 10, 5), 13);
        assert_eq!(line(f, &t, 10, 6), 13);
        assert_eq!(line(f, &t, 10, 8), 10);
        assert_eq!(line(f, &t, 10, 10), 0);
        assert_eq!(line(f, &t, 10, 12), 80);
        assert_eq!(line(f, &t, 10, 14), 0);
        assert_eq!(line(f, &t, 10, -2), 10);
    }

    #[test]
    fn truncated_tables_give_no_line_not_a_panic() {
        for f in [Format::Lnotab, Format::LineTable310, Format::Locations] {
            assert!(line(f, &[0x80 | (14 << 3), 0x40], 1, 4) >= 0);
            line(f, &[0xff; 3], 1, 100);
            line(f, &[], 1, 0);
        }
    }
}
