//! Stack scanning: the fallback when a function has no unwind information and no frame
//! pointer (hand-written assembly such as OpenBLAS's `dgemm_kernel_*`).
//!
//! Starting at the stack pointer, the first word that points into mapped code *right after a
//! call instruction* is taken as the return address (Breakpad does the same). The check on
//! the instruction bytes keeps data that merely looks like a code address out.

/// Whether the 7 code bytes before a candidate return address end with an x86_64 `call`:
/// `e8 rel32`, or `ff /2` with a register, `[reg]`, `[reg+disp8]`, `[reg+disp32]`,
/// `[rip+disp32]` or SIB operand.
pub fn follows_call(before: &[u8]) -> bool {
    let n = before.len();
    let at = |back: usize| n.checked_sub(back).map(|i| before[i]);
    if at(5) == Some(0xe8) {
        return true;
    }
    // `ff` followed by a ModRM byte whose reg field is 2, with the operand length implied by
    // mod / rm: (bytes from the ff to the end, mod, needs rm == 4 (SIB) or rm == 5).
    let forms: [(usize, u8, Option<u8>); 8] = [
        (2, 3, None),    // call reg
        (2, 0, Some(0)), // call [reg] (rm != 4, 5)
        (3, 0, Some(4)), // call [sib]
        (3, 1, Some(0)), // call [reg+disp8]
        (4, 1, Some(4)), // call [sib+disp8]
        (6, 2, Some(0)), // call [reg+disp32]
        (6, 0, Some(5)), // call [rip+disp32]
        (7, 2, Some(4)), // call [sib+disp32]
    ];
    forms.iter().any(|&(len, mode, rm)| {
        let (Some(op), Some(modrm)) = (at(len), at(len - 1)) else {
            return false;
        };
        let (m, reg, r) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
        op == 0xff
            && reg == 2
            && m == mode
            && match rm {
                None => true,
                Some(0) => r != 4 && r != 5,
                Some(4) => r == 4,
                Some(x) => r == x,
            }
    })
}

/// For a direct call (`e8 rel32`) ending at `return_address`, the address it calls.
pub fn direct_call_target(before: &[u8], return_address: u64) -> Option<u64> {
    let n = before.len();
    if n < 5 || before[n - 5] != 0xe8 {
        return None;
    }
    let rel = i32::from_le_bytes(before[n - 4..].try_into().ok()?);
    Some(return_address.wrapping_add(rel as i64 as u64))
}

/// For `call *disp32(%rip)` (`ff 15`, how code built with `-fno-plt` calls another
/// library) ending at `return_address`, the address of the slot it calls through.
pub fn rip_call_slot(before: &[u8], return_address: u64) -> Option<u64> {
    let n = before.len();
    if n < 6 || before[n - 6..n - 4] != [0xff, 0x15] {
        return None;
    }
    let disp = i32::from_le_bytes(before[n - 4..].try_into().ok()?);
    Some(return_address.wrapping_add(disp as i64 as u64))
}

/// The address of the GOT slot a PLT stub jumps through: the first `jmp *disp32(%rip)`
/// (`ff 25`, after an optional `endbr64` and `bnd` prefix) in the stub's first bytes `code`,
/// which start at `stub`.
pub fn plt_slot(code: &[u8], stub: u64) -> Option<u64> {
    let at = code.windows(2).take(10).position(|w| w == [0xff, 0x25])?;
    let disp = i32::from_le_bytes(code.get(at + 2..at + 6)?.try_into().ok()?);
    let next = stub.wrapping_add(at as u64 + 6);
    Some(next.wrapping_add(disp as i64 as u64))
}

#[cfg(test)]
mod tests {
    use super::{direct_call_target, follows_call, plt_slot, rip_call_slot};

    #[test]
    fn rip_relative_calls_name_their_slot() {
        let code = [0, 0xff, 0x15, 0x10, 0, 0, 0];
        assert_eq!(rip_call_slot(&code, 0x1000), Some(0x1010));
        assert_eq!(rip_call_slot(&[0, 0, 0xe8, 1, 2, 3, 4], 0x1000), None);
    }

    #[test]
    fn plt_stubs_name_their_got_slot() {
        // .plt.sec: endbr64; bnd jmp *0x2fe2(%rip); nop
        let sec = [
            0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0xe2, 0x2f, 0, 0, 0x0f, 0x1f,
        ];
        assert_eq!(plt_slot(&sec, 0x1000), Some(0x1000 + 11 + 0x2fe2));
        // .plt: jmp *0x10(%rip); push; jmp
        let lazy = [0xff, 0x25, 0x10, 0, 0, 0, 0x68, 1, 0, 0, 0];
        assert_eq!(plt_slot(&lazy, 0x2000), Some(0x2000 + 6 + 0x10));
        assert_eq!(plt_slot(&[0x90; 16], 0x2000), None);
    }

    #[test]
    fn direct_and_indirect_calls() {
        assert!(follows_call(&[0x90, 0x90, 0xe8, 1, 2, 3, 4]));
        assert!(follows_call(&[0, 0, 0, 0, 0, 0xff, 0xd0])); // call rax
        assert!(follows_call(&[0, 0, 0, 0, 0xff, 0x50, 0x08])); // call [rax+8]
        assert!(follows_call(&[0, 0xff, 0x15, 1, 2, 3, 4])); // call [rip+x]
        assert!(follows_call(&[0xff, 0x94, 0x24, 1, 2, 3, 4])); // call [rsp+disp32]
    }

    #[test]
    fn direct_call_targets() {
        // call -0x10 from a return address of 0x1000 lands on 0xff0.
        let rel = (-0x10i32).to_le_bytes();
        let code = [0, 0, 0xe8, rel[0], rel[1], rel[2], rel[3]];
        assert_eq!(direct_call_target(&code, 0x1000), Some(0xff0));
        assert_eq!(
            direct_call_target(&[0, 0, 0, 0, 0, 0xff, 0xd0], 0x1000),
            None
        );
    }

    #[test]
    fn other_bytes_are_not_calls() {
        assert!(!follows_call(&[0, 0, 0, 0, 0, 0, 0]));
        assert!(!follows_call(&[0, 0, 0, 0, 0, 0xff, 0xe0])); // jmp rax
        assert!(!follows_call(&[0x48, 0x89, 0xc7, 0x48, 0x89, 0xc6, 0xc3]));
        assert!(!follows_call(&[0xe8]));
    }
}
