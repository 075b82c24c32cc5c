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
