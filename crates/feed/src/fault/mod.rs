//! Fault modes of a path (issue 16): what a served stream does wrong on purpose.

pub mod frames;
