//! `confu eval` refuses a bad question file before any work, naming the question by id and line
//! (class 8 of the robustness issue): an over-long prompt, a malformed line, a question without turns, and
//! `--limit 0`.

mod common;

fn eval(questions: &str, extra: &[&str]) -> (bool, String) {
    let model = common::fixture_model();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), questions).unwrap();
    let (m, q) = (model.to_str().unwrap(), f.path().to_str().unwrap());
    let mut args = vec![
        "eval",
        "--model",
        m,
        "--prompts",
        q,
        "--draft-kind",
        "lookup",
    ];
    args.extend(["--max-new-tokens", "2"]);
    args.extend(extra);
    common::confu(&args)
}

#[test]
fn bad_questions_are_named_before_any_work() {
    let good = r#"{"question_id": 1, "category": "a", "turns": ["hello"]}"#;
    let long = format!(
        r#"{{"question_id": "long-one", "category": "a", "turns": ["{}"]}}"#,
        "word ".repeat(3000)
    );
    let (ok, text) = eval(&format!("{good}\n{good}\n{long}\n"), &[]);
    assert!(
        !ok && text.contains("long-one") && text.contains("line 3"),
        "{text}"
    );
    assert!(!text.contains("tau"), "work ran before the check: {text}");

    let (ok, text) = eval(&format!("{good}\n{{\"question_id\": 2, \"turns\": \n"), &[]);
    assert!(!ok && text.contains("line 2"), "{text}");

    let no_turns = r#"{"question_id": "blank", "category": "a", "turns": []}"#;
    let (ok, text) = eval(&format!("{good}\n{no_turns}\n"), &[]);
    assert!(!ok && text.contains("line 2"), "{text}");

    let (ok, text) = eval(&format!("{good}\n"), &["--limit", "0"]);
    assert!(!ok && text.contains("limit"), "{text}");

    let (ok, text) = eval(&format!("{good}\n\n{good}\n"), &[]);
    assert!(ok && text.contains("overall"), "{text}");
    println!(
        "eval questions: over-long, malformed, turn-less and --limit 0 refused before any work"
    );
}

/// `--repeat N` runs every prompt N times on every engine and sums the runs per question:
/// N times the tokens and rounds of one run, greedy outputs still equal to vanilla's, and the
/// speedup's interval around its point. `--repeat 0` is refused before any work.
#[test]
fn repeats_are_summed_per_question() {
    let q = r#"{"question_id": 1, "category": "a", "turns": ["the cat sat on the mat"]}
{"question_id": 2, "category": "b", "turns": ["once upon a time"]}
"#;
    let report = |repeat: &str| {
        let out = tempfile::NamedTempFile::new().unwrap();
        let path = out.path().to_str().unwrap().to_string();
        let (ok, text) = eval(q, &["--repeat", repeat, "--json", &path]);
        assert!(ok, "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["drafters"][0]["report"].clone()
    };
    let (one, three) = (report("1"), report("3"));
    for (a, b) in one["results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(three["results"].as_array().unwrap())
    {
        for key in ["vanilla_tokens", "spec_tokens", "rounds"] {
            assert_eq!(
                3 * a[key].as_u64().unwrap(),
                b[key].as_u64().unwrap(),
                "{key}: {a} / {b}"
            );
        }
        assert_eq!(b["equal_to_vanilla"], true, "{b}");
    }
    let o = &three["overall"];
    let (p, lo, hi) = (
        o["speedup"].as_f64().unwrap(),
        o["speedup_low"].as_f64().unwrap(),
        o["speedup_high"].as_f64().unwrap(),
    );
    assert!(lo <= p && p <= hi && lo > 0.0, "{o}");

    let (ok, text) = eval(q, &["--repeat", "0"]);
    assert!(!ok && text.contains("repeat"), "{text}");
    assert!(!text.contains("tau"), "work ran before the check: {text}");
}
