//! Re-indents compact JSON for `/example.json` without parsing it into values, so key order and number spelling
//! stay exactly as published.

/// Pretty-prints valid compact JSON with two-space indentation (the layout of CaliDog's `example.json`).
pub(crate) fn pretty_json(compact: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(compact.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut bytes = compact.iter().copied().peekable();
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    while let Some(byte) = bytes.next() {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                out.push(byte);
            }
            b'{' | b'[' => {
                out.push(byte);
                // Empty containers stay on one line: `{}`, `[]`.
                if let Some(&close @ (b'}' | b']')) = bytes.peek() {
                    out.push(close);
                    bytes.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(byte);
            }
            b',' => {
                out.push(byte);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => out.push(byte),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_without_touching_strings_or_numbers() {
        let compact = br#"{"a":[1,2.50,{}],"b":{"c":"x,{\"y\":[z]}"},"d":[],"e":1e3}"#;
        let expected = "{\n  \"a\": [\n    1,\n    2.50,\n    {}\n  ],\n  \"b\": {\n    \"c\": \"x,{\\\"y\\\":[z]}\"\n  },\n  \
                        \"d\": [],\n  \"e\": 1e3\n}";
        let pretty = pretty_json(compact);
        assert_eq!(String::from_utf8(pretty.clone()).unwrap(), expected);
        let reparsed: serde_json::Value = serde_json::from_slice(&pretty).unwrap();
        assert_eq!(
            reparsed,
            serde_json::from_slice::<serde_json::Value>(compact).unwrap()
        );
    }
}
