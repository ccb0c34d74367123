//! Where the walker finds each field, per CPython minor version (x86-64).
//!
//! The numbers are not written by hand: `scripts/python_offsets.sh` compiles
//! `scripts/python_offsets.c` (`offsetof`/`sizeof` of the fields below) against every installed
//! interpreter's own headers and writes `layout_table.rs`; `tests/python_versions.rs` checks the
//! committed table against the headers of the interpreters a machine has. CPython keeps these
//! layouts within a minor series (py-spy relies on the same).

/// Offsets (bytes) of the fields the walker reads. `None`: the version has no such field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// `PyInterpreterState`: the first thread state (`tstate_head`, 3.11+ `threads.head`).
    pub interp_threads_head: u64,
    /// `sizeof(PyThreadState)`.
    pub tstate_size: u64,
    /// `PyThreadState.next`.
    pub tstate_next: u64,
    /// `PyThreadState.thread_id` (the `pthread_t`).
    pub tstate_thread_id: u64,
    /// `PyThreadState.native_thread_id` (the kernel tid; 3.11+).
    pub tstate_native_thread_id: Option<u64>,
    /// `PyThreadState.frame` (< 3.11), `.cframe` (3.11, 3.12), `.current_frame` (3.13).
    pub tstate_frame: u64,
    /// `_PyCFrame.current_frame` (3.11, 3.12: the thread state points to a `_PyCFrame`).
    pub cframe_current_frame: Option<u64>,
    /// `sizeof(PyFrameObject)` (< 3.11) or `sizeof(_PyInterpreterFrame)`.
    pub frame_size: u64,
    /// The calling frame (`f_back`, 3.11+ `previous`).
    pub frame_back: u64,
    /// The frame's code object (`f_code`, 3.13 `f_executable`).
    pub frame_code: u64,
    /// The instruction pointer (3.11, 3.12 `prev_instr`, 3.13 `instr_ptr`).
    pub frame_instr: Option<u64>,
    /// Who owns the frame (3.11+; 3.12+ marks the C stack's shim frames).
    pub frame_owner: Option<u64>,
    /// `f_lasti` (< 3.11: bytes in 3.8 and 3.9, code units in 3.10).
    pub frame_lasti: Option<u64>,
    /// `co_code_adaptive`: where the instructions start inside the code object (3.11+).
    pub code_adaptive: Option<u64>,
    /// `co_qualname` (3.11+).
    pub code_qualname: Option<u64>,
    /// `sizeof(PyCodeObject)`.
    pub code_size: u64,
    /// `co_filename`.
    pub code_filename: u64,
    /// `co_name`.
    pub code_name: u64,
    /// `co_firstlineno`.
    pub code_firstlineno: u64,
    /// `co_lnotab` (3.8, 3.9) or `co_linetable` (3.10+).
    pub code_linetable: u64,
    /// `PyASCIIObject.length`.
    pub unicode_length: u64,
    /// `PyASCIIObject.state` (a bit field).
    pub unicode_state: u64,
    /// Where an ASCII string's characters start (`sizeof(PyASCIIObject)`).
    pub unicode_ascii_data: u64,
    /// Where another compact string's characters start (`sizeof(PyCompactUnicodeObject)`).
    pub unicode_compact_data: u64,
    /// The lowest bit of `state.kind` (bytes per character).
    pub unicode_kind_shift: u32,
    /// The bit of `state.compact`.
    pub unicode_compact_bit: u32,
    /// The bit of `state.ascii`.
    pub unicode_ascii_bit: u32,
    /// `PyVarObject.ob_size` of a bytes object.
    pub bytes_size: u64,
    /// `PyBytesObject.ob_sval`.
    pub bytes_data: u64,
    /// `_gil_runtime_state.last_holder` (3.12+; before, the GIL address holds the thread state).
    pub gil_last_holder: Option<u64>,
    /// `_gil_runtime_state.locked` (3.12+).
    pub gil_locked: Option<u64>,
}

impl Layout {
    /// The layout of CPython `major.minor`, if the walker knows it.
    pub fn for_version(major: u64, minor: u64) -> Option<Layout> {
        Some(include!("layout_table.rs"))
    }

    /// Bytes of a thread state that hold every field read.
    pub fn tstate_read(&self) -> usize {
        span(
            &[
                self.tstate_next,
                self.tstate_thread_id,
                self.tstate_native_thread_id.unwrap_or(0),
                self.tstate_frame,
            ],
            self.tstate_size,
        )
    }

    /// Bytes of a frame that hold every field read.
    pub fn frame_read(&self) -> usize {
        span(
            &[
                self.frame_back,
                self.frame_code,
                self.frame_instr.unwrap_or(0),
                self.frame_owner.unwrap_or(0),
                self.frame_lasti.unwrap_or(0),
            ],
            self.frame_size,
        )
    }

    /// Bytes of a code object that hold every field read.
    pub fn code_read(&self) -> usize {
        span(
            &[
                self.code_filename,
                self.code_name,
                self.code_qualname.unwrap_or(0),
                self.code_firstlineno,
                self.code_linetable,
            ],
            self.code_size,
        )
    }
}

/// Bytes from a struct's start through the last of `fields` (8-byte reads), at most `size`.
fn span(fields: &[u64], size: u64) -> usize {
    (fields.iter().max().unwrap_or(&0) + 8).min(size) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_has_a_layout_and_no_other() {
        for minor in 8..=13 {
            let l = Layout::for_version(3, minor).expect("layout");
            assert!(l.tstate_read() <= l.tstate_size as usize);
            assert!(l.frame_read() <= 128, "{minor}: {}", l.frame_read());
            // 3.11 moved the native thread id into the thread state, and frames out of objects.
            assert_eq!(l.tstate_native_thread_id.is_some(), minor >= 11);
            assert_eq!(l.frame_lasti.is_some(), minor < 11);
        }
        assert!(Layout::for_version(3, 7).is_none());
        assert!(Layout::for_version(3, 14).is_none());
        assert!(Layout::for_version(2, 7).is_none());
    }
}
