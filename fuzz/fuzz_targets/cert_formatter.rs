//! The certificate formatter on arbitrary input: both parse entry points, and for anything that parses, both
//! wire forms of the cert object must serialize to valid JSON.
#![no_main]

use certstream::cert::{CertJson, parse_certificate, parse_tbs_certificate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|der: &[u8]| {
    for parsed in [parse_certificate(der), parse_tbs_certificate(der)] {
        let Ok(cert) = parsed else { continue };
        for as_der in [None, Some(der)] {
            let json = serde_json::to_vec(&CertJson { cert: &cert, as_der, all_domains: true })
                .expect("a parsed certificate always serializes");
            serde_json::from_slice::<serde_json::Value>(&json).expect("the formatter writes valid JSON");
        }
    }
});
