//! A model's `metadata_props` (ModelProto field 14): string pairs that
//! travel with the file, read without decoding its graph.

use crate::wire::{ProtoWriter, WireReader};
use crate::OnnxError;

/// `ModelProto.metadata_props`.
const METADATA_PROPS: u32 = 14;

/// The model's metadata entries, in file order.
pub fn metadata(model: &[u8]) -> Result<Vec<(String, String)>, OnnxError> {
    let mut out = Vec::new();
    for f in WireReader::new(model) {
        let f = f?;
        if f.number != METADATA_PROPS {
            continue;
        }
        let (mut key, mut value) = (String::new(), String::new());
        for g in WireReader::new(f.len_payload("ModelProto.metadata_props")?) {
            let g = g?;
            match g.number {
                1 => key = g.string("StringStringEntryProto.key")?.to_owned(),
                2 => value = g.string("StringStringEntryProto.value")?.to_owned(),
                _ => {}
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The model with `entries` set in its metadata (replacing entries of the
/// same keys); everything else is copied through byte for byte.
pub fn with_metadata(model: &[u8], entries: &[(&str, &str)]) -> Result<Vec<u8>, OnnxError> {
    let mut out = ProtoWriter::new();
    for f in WireReader::new(model) {
        let f = f?;
        if f.number == METADATA_PROPS {
            let replaced = metadata(f.raw)?
                .iter()
                .any(|(k, _)| entries.iter().any(|(key, _)| key == k));
            if replaced {
                continue;
            }
        }
        out.raw(f.raw);
    }
    for (key, value) in entries {
        out.message(METADATA_PROPS, |m| {
            m.string(1, key);
            m.string(2, value);
        });
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, Dim, Graph, Model, Node, ValueInfo};

    #[test]
    fn entries_are_added_replaced_and_read_back() {
        let graph = Graph {
            name: "g".into(),
            nodes: vec![Node::new("Relu", "r", &["x"], &["y"])],
            initializers: vec![],
            inputs: vec![ValueInfo::new("x", DataType::Float, vec![Dim::Fixed(1)])],
            outputs: vec![ValueInfo::new("y", DataType::Float, vec![Dim::Fixed(1)])],
        };
        let bytes = Model::new(graph, 21, "test").encode();
        assert!(metadata(&bytes).unwrap().is_empty());
        let one = with_metadata(&bytes, &[("a", "1"), ("b", "2")]).unwrap();
        let two = with_metadata(&one, &[("a", "3")]).unwrap();
        assert_eq!(
            metadata(&two).unwrap(),
            [("b".into(), "2".into()), ("a".into(), "3".into())]
        );
        assert_eq!(
            crate::inspect(&two).unwrap(),
            crate::inspect(&bytes).unwrap()
        );
    }
}
