/* The CPython struct offsets cpuprof's Python stack walker reads (crates/cpuprof-python/src/walk/
 * layout.rs), printed from the interpreter's own headers: compiled once per CPython minor version
 * by scripts/python_offsets.sh, which writes the table. Build with -DPy_BUILD_CORE and the
 * version's include directories. */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#if PY_VERSION_HEX < 0x03090000
#include "internal/pycore_pystate.h"
#else
#include "internal/pycore_interp.h"
#endif
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include <frameobject.h>
#endif
#if PY_VERSION_HEX >= 0x030C0000
#include "internal/pycore_gil.h"
#endif

#define F(name, expr) printf("        %s: %zu,\n", name, (size_t)(expr))
/* A field some versions do not have. */
#define SOME(name, expr) printf("        %s: Some(%zu),\n", name, (size_t)(expr))
#define NONE(name) printf("        %s: None,\n", name)

int main(void) {
    printf("    (%d, %d) => Layout {\n", PY_MAJOR_VERSION, PY_MINOR_VERSION);
#if PY_VERSION_HEX >= 0x030B0000
    F("interp_threads_head", offsetof(PyInterpreterState, threads.head));
#else
    F("interp_threads_head", offsetof(PyInterpreterState, tstate_head));
#endif
    F("tstate_size", sizeof(PyThreadState));
    F("tstate_next", offsetof(PyThreadState, next));
    F("tstate_thread_id", offsetof(PyThreadState, thread_id));
#if PY_VERSION_HEX >= 0x030B0000
    SOME("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
#else
    NONE("tstate_native_thread_id");
#endif
#if PY_VERSION_HEX >= 0x030D0000
    F("tstate_frame", offsetof(PyThreadState, current_frame));
    NONE("cframe_current_frame");
#elif PY_VERSION_HEX >= 0x030B0000
    F("tstate_frame", offsetof(PyThreadState, cframe));
    SOME("cframe_current_frame", offsetof(_PyCFrame, current_frame));
#else
    F("tstate_frame", offsetof(PyThreadState, frame));
    NONE("cframe_current_frame");
#endif
#if PY_VERSION_HEX >= 0x030B0000
    F("frame_size", sizeof(_PyInterpreterFrame));
    F("frame_back", offsetof(_PyInterpreterFrame, previous));
#if PY_VERSION_HEX >= 0x030D0000
    F("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    SOME("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#else
    F("frame_code", offsetof(_PyInterpreterFrame, f_code));
    SOME("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#endif
    SOME("frame_owner", offsetof(_PyInterpreterFrame, owner));
    NONE("frame_lasti");
    SOME("code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
    SOME("code_qualname", offsetof(PyCodeObject, co_qualname));
#else
    F("frame_size", sizeof(PyFrameObject));
    F("frame_back", offsetof(PyFrameObject, f_back));
    F("frame_code", offsetof(PyFrameObject, f_code));
    NONE("frame_instr");
    NONE("frame_owner");
    SOME("frame_lasti", offsetof(PyFrameObject, f_lasti));
    NONE("code_adaptive");
    NONE("code_qualname");
#endif
    F("code_size", sizeof(PyCodeObject));
    F("code_filename", offsetof(PyCodeObject, co_filename));
    F("code_name", offsetof(PyCodeObject, co_name));
    F("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
#if PY_VERSION_HEX >= 0x030A0000
    F("code_linetable", offsetof(PyCodeObject, co_linetable));
#else
    F("code_linetable", offsetof(PyCodeObject, co_lnotab));
#endif
    F("unicode_length", offsetof(PyASCIIObject, length));
    F("unicode_state", offsetof(PyASCIIObject, state));
    F("unicode_ascii_data", sizeof(PyASCIIObject));
    F("unicode_compact_data", sizeof(PyCompactUnicodeObject));
    {
        /* The state bit-field's bits, as this compiler lays them out. */
        PyASCIIObject o;
        unsigned int bits;
        memset(&o, 0, sizeof o);
        o.state.kind = 7;
        memcpy(&bits, &o.state, sizeof bits);
        F("unicode_kind_shift", __builtin_ctz(bits));
        memset(&o, 0, sizeof o);
        o.state.compact = 1;
        memcpy(&bits, &o.state, sizeof bits);
        F("unicode_compact_bit", __builtin_ctz(bits));
        memset(&o, 0, sizeof o);
        o.state.ascii = 1;
        memcpy(&bits, &o.state, sizeof bits);
        F("unicode_ascii_bit", __builtin_ctz(bits));
    }
    F("bytes_size", offsetof(PyVarObject, ob_size));
    F("bytes_data", offsetof(PyBytesObject, ob_sval));
#if PY_VERSION_HEX >= 0x030C0000
    SOME("gil_last_holder", offsetof(struct _gil_runtime_state, last_holder));
    SOME("gil_locked", offsetof(struct _gil_runtime_state, locked));
#else
    NONE("gil_last_holder");
    NONE("gil_locked");
#endif
    printf("    },\n");
    return 0;
}
