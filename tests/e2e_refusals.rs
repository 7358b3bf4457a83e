//! Invalid resources against a real API server (the devcluster, no operator):
//! every case of `tests/invalid/` applied server-side must be refused with a
//! message naming the field, and every object of `tests/valid/` and
//! `examples/` must be accepted — the generated CRDs' schema and CEL rules as
//! the API server (not only the offline evaluator) enforces them.

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/devcluster.rs"]
mod devcluster;

use devcluster::DevCluster;

const NS: &str = "e2e-refusals";

/// `kubectl apply --server-side` of one document; the API server's answer.
fn apply(cluster: &DevCluster, doc: &str, dry_run: bool) -> Result<String, String> {
    let mut args = vec![
        "-n",
        NS,
        "apply",
        "--server-side",
        "--field-manager=e2e-refusals",
        "-f",
        "-",
    ];
    if dry_run {
        args.push("--dry-run=server");
    }
    cluster.kubectl_stdin(&args, doc)
}

#[test]
fn api_server_refuses_the_invalid_corpus_and_accepts_the_valid_one() {
    let cluster = DevCluster::up_without_operator(131);
    cluster
        .kubectl(&["create", "namespace", NS])
        .expect("namespace");
    let step = |s: &str| eprintln!("[e2e-refusals] {s}");

    step("examples/ and tests/valid/ are accepted (examples as a server-side dry run)");
    let mut accepted = 0;
    for case in corpus::valid() {
        // Examples only as a dry run: they stay free for anyone's real use.
        let dry_run = std::path::Path::new(corpus::ROOT)
            .join("examples")
            .join(&case.file)
            .exists();
        for (i, doc) in case.raw.iter().enumerate() {
            if let Err(e) = apply(&cluster, doc, dry_run) {
                panic!("{} document {i} refused:\n{e}", case.file);
            }
            accepted += 1;
        }
    }

    step("every invalid case is refused and the message names the field");
    let cases = corpus::invalid();
    let mut refused = 0;
    let mut failures = Vec::new();
    for case in &cases {
        for (i, doc) in case.raw[..case.raw.len() - 1].iter().enumerate() {
            if let Err(e) = apply(&cluster, doc, false) {
                failures.push(format!("{}: setup document {i} refused: {e}", case.file));
            }
        }
        match apply(&cluster, case.raw.last().expect("document"), false) {
            Ok(out) => failures.push(format!("{}: accepted: {out}", case.file)),
            Err(e) => {
                refused += 1;
                // A refusal by the API server (not a transport error) that
                // names the field.
                let refusal = e.contains(" is invalid: ") || e.contains("Error from server");
                if !refusal || !e.contains(&case.expect) {
                    failures.push(format!(
                        "{}: refusal does not name {:?}: {e}",
                        case.file, case.expect
                    ));
                }
            }
        }
    }
    step(&format!(
        "{} valid objects accepted; {refused} of {} invalid cases refused",
        accepted,
        cases.len()
    ));
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(refused, cases.len());
    assert!(cases.len() >= 60);
}
