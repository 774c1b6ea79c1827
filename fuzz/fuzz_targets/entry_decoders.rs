//! Every CT entry decoder on arbitrary input. The first byte picks the decoder so seeds built from real
//! entries (bench/fuzz.sh writes them) stay meaningful:
//! 0: decode_rfc6962  — [0, u16 leaf_input length, leaf_input, extra_data]
//! 1: data_tile_entries — [1, u16 tile_index, tile bytes]
//! 2: get-entries body  — [2, JSON]; both parsers, which must agree when both accept it.
#![no_main]

use certstream_ct::entry::decode_rfc6962;
use certstream_ct::get_entries::parse_get_entries;
use certstream_ct::tile::{TileError, data_tile_entries, leaf_hash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let Some((len, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let (leaf_input, extra_data) =
                rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()));
            let _ = decode_rfc6962(leaf_input, extra_data);
        }
        1 => {
            let Some((index, tile)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let mut failed = false;
            for item in data_tile_entries(tile, u64::from(u16::from_be_bytes(*index))) {
                assert!(!failed, "data_tile_entries yielded an item after broken framing");
                match item {
                    Ok(entry) => {
                        std::hint::black_box(leaf_hash(entry.timestamped_entry));
                    }
                    // A bad record whose boundaries are known is skipped alone; the next ones follow.
                    Err(TileError::Record { .. }) => {}
                    Err(TileError::Framing(_)) => failed = true,
                }
            }
        }
        _ => {
            let _ = std::hint::black_box(parse_get_entries(rest));
        }
    }
});
