//! Which verbs each binary offers: the product binary `floe` carries no benchmarks; the
//! harness `floe-bench` carries them with their arguments.

use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Run `bin args… --help`; it must succeed. Returns its stdout.
fn help(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} --help failed: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a clap help text lists: the first word of each entry under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // An entry starts two spaces in; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn floe_help_does_not_list_bench() {
    let text = help(&floe_bin(), &[]);
    let verbs = subcommands(&text);
    // The list was found and read: the product's verbs are in it.
    for verb in ["create", "append", "alter", "sync", "demo", "help"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "floe --help does not list {verb}: {verbs:?}\n{text}"
        );
    }
    assert!(
        !verbs.iter().any(|v| v.starts_with("bench")),
        "floe --help lists a bench verb: {verbs:?}"
    );
    // Gone, not hidden: the verb is refused.
    let out = Command::new(floe_bin())
        .args(["bench", "catalog", "--help"])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "floe bench still runs: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn floe_bench_help_lists_its_benchmarks_and_their_arguments() {
    let bin = floe_bench_bin();
    let text = help(&bin, &[]);
    let verbs = subcommands(&text);
    for verb in ["fleet", "catalog", "commits"] {
        assert!(
            verbs.iter().any(|v| v == verb),
            "floe-bench --help does not list {verb}: {verbs:?}\n{text}"
        );
    }
    assert!(text.contains("--warehouse"), "no --warehouse in:\n{text}");
    let arguments: [(&str, &[&str]); 3] = [
        (
            "fleet",
            &[
                "--scale",
                "--repeats",
                "--dir",
                "--python",
                "--s3",
                "--cases",
                "--floe-bin",
                "--gateway-bin",
            ],
        ),
        ("catalog", &["--steps", "--repeats"]),
        ("commits", &["--sizes", "--rows", "--window", "--modes"]),
    ];
    for (verb, flags) in arguments {
        let text = help(&bin, &[verb]);
        for flag in flags {
            assert!(
                text.contains(flag),
                "floe-bench {verb} --help lacks {flag}:\n{text}"
            );
        }
    }
}

/// `floe … | head` closes floe's stdout early: floe ends quietly, as a Unix tool does
/// (the default SIGPIPE action), never with a panic ("failed printing to stdout").
#[test]
fn a_closed_stdout_ends_floe_quietly() {
    let (wh, _dir) = crate::support::local_warehouse();
    crate::support::floe_ok(wh.url(), &["create", "fleet.pipe"]);
    let mut child = std::process::Command::new(crate::support::floe_bin())
        .args(["--warehouse", wh.url(), "describe", "fleet.pipe"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked"),
        "floe panicked on a closed pipe: {err}"
    );
}
