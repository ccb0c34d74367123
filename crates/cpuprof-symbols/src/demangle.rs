//! Demangling of Rust (legacy and v0) and C++ (Itanium) symbol names.

/// Demangles `name` if it is a Rust or C++ mangled name; returns it unchanged otherwise.
/// Rust names lose their hash suffix (`core::ptr::drop_in_place<T>`, not `...::h0123abcd`).
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name) {
            if let Ok(s) = sym.demangle(&cpp_demangle::DemangleOptions::default()) {
                return s;
            }
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn rust_legacy_loses_hash() {
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
    }

    #[test]
    fn cpp_is_demangled() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
    }

    #[test]
    fn c_names_stay() {
        assert_eq!(demangle("cblas_dgemm"), "cblas_dgemm");
        assert_eq!(demangle("_start"), "_start");
    }
}
