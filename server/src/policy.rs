//! Vended credentials: the STS session policy that confines temporary S3 credentials to one
//! table, for a server that hands out credentials (`AssumeRole` with `Policy`) instead of
//! signing each request. The policy is the intersection with the role's own, so it can only
//! narrow it. It states the same rules as the signer ([`crate::signer`]):
//!
//! - reads (`GetObject`) of the table's `data/` and `metadata/` objects, and a LIST of
//!   exactly those prefixes;
//! - for writers, also `PutObject` (with multipart) there, except table metadata (the
//!   version hint and every `*.metadata.json`): commits go through the catalog, since a
//!   created `v{N+1}` would be a commit that bypasses its checks;
//! - never a delete, never another prefix.
//!
//! No STS is at hand in the tests, so the policy is built and checked here as data.

use serde_json::{json, Value};

use crate::error::Error;
use crate::grants::Level;

/// An STS session policy is at most 2,048 characters once packed.
pub const MAX_POLICY_CHARS: usize = 2048;

/// The session policy for a principal with `level` on the table stored at
/// `s3://{bucket}/{table_key}` (`table_key` without a trailing slash, e.g.
/// `warehouse/fleet/dev_042`). A policy over STS's size limit (very long bucket and table
/// names) is refused, never cut: such a table is reached through the signer instead.
pub fn session_policy(bucket: &str, table_key: &str, level: Level) -> Result<Value, Error> {
    let key = table_key.trim_matches('/');
    let objects = |folder: &str| format!("arn:aws:s3:::{bucket}/{key}/{folder}/*");
    let mut statements = vec![
        json!({
            "Sid": "ReadTable",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [objects("data"), objects("metadata")],
        }),
        json!({
            "Sid": "ListTable",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [format!("arn:aws:s3:::{bucket}")],
            "Condition": {"StringLike": {"s3:prefix": [
                format!("{key}/data/*"),
                format!("{key}/metadata/*"),
            ]}},
        }),
    ];
    if level == Level::Write {
        statements.push(json!({
            "Sid": "WriteTable",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
            "Resource": [objects("data"), objects("metadata")],
        }));
        statements.push(json!({
            "Sid": "NoTableMetadata",
            "Effect": "Deny",
            "Action": ["s3:PutObject"],
            "Resource": [
                format!("arn:aws:s3:::{bucket}/{key}/metadata/version-hint.text"),
                format!("arn:aws:s3:::{bucket}/{key}/metadata/*.metadata.json"),
            ],
        }));
    }
    let policy = json!({ "Version": "2012-10-17", "Statement": statements });
    let size = policy.to_string().len();
    if size > MAX_POLICY_CHARS {
        return Err(Error::BadRequest(format!(
            "the session policy for s3://{bucket}/{key} would be {size} characters, over STS's {MAX_POLICY_CHARS}: use remote signing for this table"
        )));
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(p: &Value) -> &Vec<Value> {
        p["Statement"].as_array().unwrap()
    }

    fn actions(s: &Value) -> Vec<&str> {
        s["Action"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect()
    }

    #[test]
    fn a_reader_may_only_get_and_list_its_table() {
        let p = session_policy("fleet-bucket", "wh/site_17/c1", Level::Read).unwrap();
        for s in statements(&p) {
            assert_eq!(s["Effect"], "Allow");
            for a in actions(s) {
                assert!(a == "s3:GetObject" || a == "s3:ListBucket", "{a}");
            }
        }
        let text = p.to_string();
        assert!(text.contains("arn:aws:s3:::fleet-bucket/wh/site_17/c1/data/*"));
        assert!(!text.contains("PutObject") && !text.contains("Delete"));
    }

    #[test]
    fn a_writer_puts_only_inside_its_table_never_deletes_and_never_writes_table_metadata() {
        let p = session_policy("b", "wh/fleet/dev_042/", Level::Write).unwrap();
        let allow_put: Vec<&Value> = statements(&p)
            .iter()
            .filter(|s| s["Effect"] == "Allow" && actions(s).contains(&"s3:PutObject"))
            .collect();
        assert_eq!(allow_put.len(), 1);
        for r in allow_put[0]["Resource"].as_array().unwrap() {
            let r = r.as_str().unwrap();
            assert!(
                r == "arn:aws:s3:::b/wh/fleet/dev_042/data/*"
                    || r == "arn:aws:s3:::b/wh/fleet/dev_042/metadata/*",
                "{r}"
            );
        }
        let text = p.to_string();
        assert!(!text.contains("Delete"), "no delete is ever granted");
        let deny = statements(&p)
            .iter()
            .find(|s| s["Sid"] == "NoTableMetadata")
            .unwrap();
        assert_eq!(deny["Effect"], "Deny");
        assert!(
            deny.get("Condition").is_none(),
            "denied whatever the headers"
        );
        let denied: Vec<&str> = deny["Resource"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert_eq!(
            denied,
            [
                "arn:aws:s3:::b/wh/fleet/dev_042/metadata/version-hint.text",
                "arn:aws:s3:::b/wh/fleet/dev_042/metadata/*.metadata.json"
            ]
        );
    }

    #[test]
    fn a_policy_over_the_sts_limit_is_refused_not_cut() {
        // Typical names fit with room to spare.
        let p = session_policy(
            "fleet-prod-eu-west-1",
            "warehouse/fleet/dev_000042",
            Level::Write,
        )
        .unwrap();
        assert!(p.to_string().len() <= MAX_POLICY_CHARS);
        // Names at their limits (128 bytes each) do not: refused, naming the table.
        let long = format!("warehouse/{}/{}", "n".repeat(128), "t".repeat(128));
        let e = session_policy(&"b".repeat(63), &long, Level::Write).unwrap_err();
        assert!(e.to_string().contains("use remote signing"), "{e}");
        assert!(e.to_string().contains(&long), "{e}");
    }
}
