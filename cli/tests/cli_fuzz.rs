//! Fuzz-style test of the command-line surface: every value-taking flag of `generate`, `eval`
//! and `bench` gets hostile values (negative, zero, huge, overflowing, non-finite, non-numeric,
//! empty, path-like). The binary must never panic or run away (each run has a time limit and,
//! where `prlimit` exists, a 4 GiB memory limit), and a refusal must name the flag it was given
//! (or, for paths, the value typed).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HOSTILE: [&str; 12] = [
    "",
    "-1",
    "0",
    "1",
    "18446744073709551615",
    "99999999999999999999999",
    "nan",
    "inf",
    "1e400",
    "abc",
    "0.5",
    "../../etc/passwd",
];

/// Run with a time limit; returns (success, output).
fn run(args: &[String]) -> (bool, String) {
    // Memory is bounded too: with util-linux's prlimit (Debian has it), each run gets 4 GiB of
    // address space, and an allocation beyond it aborts the run, which fails the test.
    let limited = std::path::Path::new("/usr/bin/prlimit").exists();
    let mut cmd = if limited {
        let mut c = Command::new("/usr/bin/prlimit");
        c.args(["--as=4294967296", "--", env!("CARGO_BIN_EXE_confu")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_confu"))
    };
    let mut child = cmd
        .args(args)
        .env(
            "CONFU_CACHE_DIR",
            std::env::temp_dir().join("confu-fuzz-cache"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("{args:?} ran for over 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{args:?} panicked: {text}");
    assert!(
        out.status.code().is_some(),
        "{args:?} was killed by a signal: {text}"
    );
    (out.status.success(), text)
}

#[test]
fn hostile_flag_values_never_panic_and_refusals_name_the_flag() {
    let model = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let m = model.to_str().unwrap().to_string();
    let q = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        q.path(),
        "{\"question_id\": 1, \"category\": \"a\", \"turns\": [\"hi\"]}\n",
    )
    .unwrap();
    let qp = q.path().to_str().unwrap().to_string();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<String>>();
    let generate = s(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "hi",
        "--max-new-tokens",
        "2",
    ]);
    let eval = s(&[
        "eval",
        "--model",
        &m,
        "--prompts",
        &qp,
        "--draft-kind",
        "lookup",
        "--max-new-tokens",
        "2",
    ]);
    let decode = s(&[
        "bench",
        "decode",
        "--model",
        &m,
        "--prompt-len",
        "4",
        "--new-tokens",
        "2",
        "--runs",
        "1",
        "--warmup",
        "0",
    ]);
    let spec = s(&[
        "bench",
        "spec",
        "--model",
        &m,
        "--prompt-len",
        "4",
        "--tree-sizes",
        "1,2",
        "--runs",
        "1",
    ]);
    let surface: Vec<(&Vec<String>, &[&str])> = vec![
        (
            &generate,
            &[
                "--max-new-tokens",
                "--temperature",
                "--top-k",
                "--top-p",
                "--seed",
                "--tree",
                "--device",
                "--draft",
                "--draft-kind",
            ],
        ),
        (
            &eval,
            &[
                "--max-new-tokens",
                "--temperature",
                "--seed",
                "--limit",
                "--tree",
            ],
        ),
        (
            &decode,
            &["--prompt-len", "--new-tokens", "--runs", "--warmup"],
        ),
        (&spec, &["--prompt-len", "--tree-sizes", "--tree", "--runs"]),
    ];
    let (mut runs, mut refused) = (0, 0);
    for (base, flags) in surface {
        for flag in flags {
            for value in HOSTILE {
                // The flag replaces its value in the base arguments, or is appended.
                let mut args = base.clone();
                match args.iter().position(|a| a == flag) {
                    Some(i) => args[i + 1] = value.to_string(),
                    None => args.extend([flag.to_string(), value.to_string()]),
                }
                let (ok, text) = run(&args);
                runs += 1;
                if !ok {
                    refused += 1;
                    // Named by the flag, or (a path, a device) by the value the user typed.
                    let name = flag.trim_start_matches("--");
                    let named = text.contains(flag)
                        || text.contains(name)
                        || text.contains(&name.replace('-', "_"))
                        || (!value.is_empty() && text.contains(value));
                    assert!(named, "{args:?} was refused without naming {flag}: {text}");
                }
            }
        }
    }
    println!("cli fuzz: {runs} runs with hostile flag values, {refused} refused naming the flag, none panicked");
}
