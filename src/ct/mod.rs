//! (being written)
pub mod checkpoint;
pub mod log_list;
