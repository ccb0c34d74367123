//! The machine and the share of it the target may use.

pub mod machine;

pub use machine::read_machine;
