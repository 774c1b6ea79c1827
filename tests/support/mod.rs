//! Helpers shared by integration tests.
// Each test crate compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod der;
pub mod examples;
pub mod python;
