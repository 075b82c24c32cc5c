//! The policy's choices under hand-set costs, and the cut trees against EAGLE-2's budgets.

use super::*;
use crate::tree::build_scored_tree;

/// A drafted tree with pseudo-random draft distributions over 12 tokens.
fn drafted(settings: TreeSettings) -> (DraftTree, Vec<f32>) {
    let logp = |seed: usize| -> Vec<f32> {
        let raw: Vec<f32> = (0..12)
            .map(|i| (((seed * 31 + i * 17) % 23) as f32) / 4.0)
            .collect();
        crate::tree::log_softmax(&raw)
    };
    build_scored_tree(
        0,
        &logp(1),
        settings,
        |i| i as u32,
        |step, frontier| {
            Ok((0..frontier.len())
                .map(|slot| logp(step * 7 + slot * 3 + frontier[slot].token as usize + 2))
                .collect())
        },
    )
    .unwrap()
}

#[test]
fn a_cut_tree_is_the_tree_eagle_builds_with_that_budget() {
    let big = TreeSettings {
        total_tokens: 40,
        depth: 3,
        top_k: 4,
    };
    let (tree, scores) = drafted(big);
    let order = score_order(&tree, &scores);
    for n in 1..=tree.len() {
        let (cut, cut_scores) = top_nodes(&tree, &scores, &order[..n - 1]);
        let (want, want_scores) = drafted(TreeSettings {
            total_tokens: n,
            ..big
        });
        assert_eq!(cut, want, "n = {n}");
        assert_eq!(cut_scores, want_scores, "n = {n}");
    }
}

fn policy(verify: Vec<(usize, f64)>, draft_per_forward: f64) -> AutoTree {
    let options = AutoTreeOptions {
        max: TreeSettings {
            total_tokens: 32,
            depth: 4,
            top_k: 4,
        },
        probe_share: 0.01,
        ..AutoTreeOptions::default()
    };
    let mut costs = CostModel::new(verify, 5, 1.0);
    for f in 1..=5 {
        costs.observe(f, 0, draft_per_forward * f as f64, 0.0, 0.0);
    }
    AutoTree::new(options, costs)
}

fn chain_rows(n: usize) -> usize {
    n
}

/// The head tree of a plan (`None`: plain decoding or a lookup chain).
fn tree_of(plan: Plan) -> Option<TreeSettings> {
    match plan {
        Plan::Tree(settings) => Some(settings),
        _ => None,
    }
}

#[test]
fn plain_decoding_when_every_row_costs_a_step() {
    // A row costs as much as a vanilla step; the best child is taken 60 % of the time.
    let mut p = policy(vec![(1, 1.0), (2, 2.0)], 0.3);
    assert_eq!(
        p.plan(100, &chain_rows, CatchUp::none(), None),
        Plan::Plain,
        "the prior predicts that no tree pays"
    );
    // Plain rounds, with probes of the best tree (one level, 0.3 s of drafting) 30, 30, 32,
    // then 64 rounds apart: the first waits are set by the 1 % share (0.3 s of probe per
    // 30 s of plain rounds), the later ones by the wait that doubles as each probe finds
    // nothing worth verifying.
    let mut probes = Vec::new();
    for round in 2..=160 {
        let plan = p.plan(100, &chain_rows, CatchUp::none(), None);
        if let Some(plan) = tree_of(plan) {
            probes.push(round);
            let (tree, scores) = drafted(plan);
            let (_, _, choice) = p.choose(&tree, &scores, plan.depth + 1, &chain_rows);
            assert_eq!(choice.nodes, 1);
        } else {
            assert_eq!(plan, Plan::Plain);
        }
    }
    assert_eq!(
        probes,
        vec![30, 60, 92, 156],
        "probes 30, 30, 32, 64 rounds apart"
    );
}

#[test]
fn probes_wait_until_the_catch_up_is_a_small_share_of_the_plain_time() {
    // A plain round costs 1 s; the head's catch-up is assumed at 0.05 s per deferred
    // position and the probe drafts one level (0.3 s), so with 100 deferred positions a
    // probe costs 5.3 s: 530 plain rounds at a 1 % share.
    let mut p = head_never_pays();
    let mut probes = Vec::new();
    for round in 2..=1100 {
        if let Some(plan) = tree_of(p.plan(100, &chain_rows, CatchUp::deferred(100), None)) {
            probes.push(round);
            let (tree, scores) = drafted(plan);
            p.choose(&tree, &scores, plan.depth + 1, &chain_rows);
        }
    }
    assert_eq!(probes, vec![530, 1060], "a probe every 530 plain rounds");
    // A measured catch-up replaces the prior.
    p.observe_catch_up(100, 1.0);
    assert!((p.costs().catch_up(100) - 1.0).abs() < 1e-12);
}

#[test]
fn large_trees_when_verification_is_flat() {
    // Verifying 64 rows costs what one does; drafting is cheap.
    let mut p = policy(vec![(1, 1.0), (64, 1.0)], 0.01);
    let (tree, scores) = drafted(tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).unwrap());
    let (cut, _, choice) = p.choose(&tree, &scores, 5, &chain_rows);
    assert_eq!(cut.len(), tree.len(), "every node is free to verify");
    assert_eq!(choice.nodes, tree.len());
    assert_eq!(choice.levels, 5);
    let expected = 1.0 + p.stats().expected_accepted(&tree);
    assert!((choice.predicted_tokens - expected).abs() < 1e-9);
    assert!(
        tree_of(p.plan(100, &chain_rows, CatchUp::none(), None))
            .unwrap()
            .depth
            >= 3
    );
}

#[test]
fn the_node_count_trades_acceptance_against_verification_time() {
    // Each row past the first costs a tenth of a step: a node is worth it when it is reached
    // more than a tenth of the time (at the best rate, about one token per step).
    let mut p = policy(vec![(1, 1.0), (2, 1.1), (64, 7.3)], 0.0);
    let (tree, scores) = drafted(tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).unwrap());
    let (cut, _, _) = p.choose(&tree, &scores, 5, &chain_rows);
    let reach = p.stats().reach(&cut);
    assert!(
        cut.len() > 1 && cut.len() < tree.len(),
        "{} of {}",
        cut.len(),
        tree.len()
    );
    assert!(reach.iter().skip(1).all(|&r| r > 0.05), "{reach:?}");
}

#[test]
fn a_tree_after_plain_rounds_must_pay_for_the_head_catch_up() {
    // Two rows cost 1.1 steps, drafting is cheap and every draft is taken: a tree pays well
    // after a head tree (nothing deferred), but not when the head must first catch up on 100
    // positions at 0.05 steps each.
    let mut p = policy(vec![(1, 1.0), (2, 1.1), (64, 7.3)], 0.01);
    let first = tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).expect("a tree");
    for _ in 0..40 {
        let (tree, scores) = drafted(first);
        let (cut, _, choice) = p.choose(&tree, &scores, first.depth + 1, &chain_rows);
        p.observe_acceptance(&choice, &cut, &first_children(&cut));
    }
    p.observe_catch_up(100, 5.0);
    assert!(
        tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).is_some(),
        "nothing deferred"
    );
    let mut plans = (0..5).map(|_| p.plan(100, &chain_rows, CatchUp::deferred(100), None));
    assert!(
        plans.all(|plan| plan == Plan::Plain),
        "100 deferred positions cost 5 steps"
    );
}

/// The path that takes every node's first child, root first.
fn first_children(tree: &DraftTree) -> Vec<usize> {
    let children = tree.children();
    let mut path = vec![0];
    while let Some(&c) = children[*path.last().expect("the root")].first() {
        path.push(c);
    }
    path
}

/// A lookup chain of `drafts` tokens after a match of `ngram` tokens.
fn chain(drafts: usize, ngram: usize) -> LookupMatch {
    let mut chain = DraftTree::root_only(0);
    for d in 1..=drafts {
        chain.tokens.push(d as u32);
        chain.parents.push(Some(d - 1));
        chain.depths.push(d);
    }
    LookupMatch { chain, ngram }
}

/// A policy whose head trees never pay (a row costs a step, drafting is dear), after its
/// first round (plain: the prior predicts as much).
fn head_never_pays() -> AutoTree {
    let mut p = policy(vec![(1, 1.0), (2, 2.0)], 0.3);
    assert_eq!(p.plan(100, &chain_rows, CatchUp::none(), None), Plan::Plain);
    p
}

/// The policy of [`policy`] with its acceptance prior: the best child taken `top1` of the time.
fn with_top1(p: AutoTree, top1: f64) -> AutoTree {
    p.with_acceptance_prior(&AcceptancePrior::from_top1(vec![top1]).unwrap())
}

#[test]
fn a_fresh_policy_drafts_the_depth_its_prior_predicts_best() {
    // A row past the first costs a twentieth of a step, a draft forward a tenth: how deep to
    // draft depends on how often drafts are expected to be taken.
    let costs = || vec![(1, 1.0), (2, 1.05), (64, 4.15)];
    let depth = |top1: f64| {
        let mut p = with_top1(policy(costs(), 0.1), top1);
        tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).map(|t| t.depth + 1)
    };
    let (low, mid, high) = (depth(0.3), depth(0.6), depth(0.95));
    assert!(
        low.unwrap_or(0) < mid.unwrap() && mid < high,
        "{low:?} {mid:?} {high:?}"
    );
    assert_eq!(
        high,
        Some(5),
        "a head that is nearly always right: the deepest tree"
    );
    // A tree charged for a long catch-up does not pay (the drafter charges a sequence's first
    // tree nothing for the prompt, which every later tree needs).
    let mut p = with_top1(policy(costs(), 0.1), 0.95);
    assert_eq!(
        p.plan(100, &chain_rows, CatchUp::deferred(100_000), None),
        Plan::Plain
    );
    // A sequence's first tree pays its pass over the prompt once for the tokens left: 100
    // positions (5 plain steps) are worth it before 1000 tokens, not before 3.
    let plan = p.plan(100, &chain_rows, CatchUp::first(100, 1000), None);
    assert_eq!(tree_of(plan).map(|t| t.depth + 1), high);
    assert_eq!(
        p.plan(100, &chain_rows, CatchUp::first(100, 3), None),
        Plan::Plain
    );
    // The same head when drafting costs a step per forward: plain decoding from the start.
    let mut dear = with_top1(policy(costs(), 1.0), 0.6);
    assert_eq!(
        dear.plan(100, &chain_rows, CatchUp::none(), None),
        Plan::Plain
    );
}

#[test]
fn a_depth_not_yet_drafted_is_predicted_from_the_measured_acceptance() {
    // Without exploration, only a prediction can take the policy deeper than it has drafted.
    let costs = vec![(1, 1.0), (2, 1.05), (64, 4.15)];
    let mut p = with_top1(policy(costs, 0.1), 0.3);
    p.options.explore_every = 0;
    let first = tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).expect("a tree");
    assert_eq!(first.depth + 1, 1, "{first:?}");
    // Every first child taken: the level counts never drafted, predicted by the ideal tree under
    // the acceptance measured so far, now promise more, and each is drafted (and so measured)
    // in turn.
    let mut plan = first;
    let mut levels = Vec::new();
    for _ in 0..4 {
        let (tree, scores) = drafted(plan);
        let (cut, _, choice) = p.choose(&tree, &scores, plan.depth + 1, &chain_rows);
        p.observe_acceptance(&choice, &cut, &first_children(&cut));
        p.observe_costs(&choice, 0.1 * choice.levels as f64, 1.0, 0.0);
        plan = tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).expect("a tree");
        levels.push(plan.depth + 1);
    }
    assert_eq!(levels, vec![2, 3, 4, 5]);
}

#[test]
fn a_lookup_chain_that_pays_is_verified_without_the_head() {
    // Rows past the first cost a tenth of a step; the prior takes a draft after a 3-token
    // match half the time, so every draft of the chain is worth its row.
    let mut p = policy(vec![(1, 1.0), (2, 1.1), (64, 7.3)], 0.3);
    p.costs = CostModel::new(vec![(1, 1.0), (2, 1.1), (64, 7.3)], 5, 1.0);
    let first = tree_of(p.plan(100, &chain_rows, CatchUp::none(), None)).unwrap();
    let (tree, scores) = drafted(first);
    p.choose(&tree, &scores, first.depth + 1, &chain_rows);
    // The head's measured drafting: a full step per forward, so no tree pays.
    for f in 1..=5 {
        p.costs.observe(f, 0, 1.0 * f as f64, 0.0, 0.0);
    }
    let long = chain(6, 3);
    let plan = p.plan(100, &chain_rows, CatchUp::none(), Some(&long));
    let Plan::Lookup { drafts } = plan else {
        panic!("{plan:?}")
    };
    // Expected accepted drafts 0.5, 0.75, 0.875, 0.94 for 1.1, 1.2, 1.3, 1.4 steps: rates
    // 1.36, 1.46, 1.44, 1.38 tokens per step.
    assert_eq!(drafts, 2);
    let (cut, choice) = p.lookup_choice(&long, drafts);
    assert_eq!(cut.len(), drafts + 1);
    assert_eq!(
        (choice.levels, choice.nodes, choice.rows),
        (0, drafts + 1, drafts + 1)
    );
    assert_eq!(choice.lookup_ngram, 3);
    assert!(!choice.head_tree());
    let want = 1.0 + p.lookup_stats().chain_expected(0, drafts)[drafts - 1];
    assert!((choice.predicted_tokens - want).abs() < 1e-12);
    // Its acceptance is the lookup's, not the head's.
    let head = p.stats().clone();
    p.observe_acceptance(&choice, &cut, &(0..=drafts).collect::<Vec<_>>());
    assert_eq!(p.stats(), &head);
    assert!(p.lookup_stats().rate(1, 0) > 0.5);
    // Room for the root alone: nothing to verify but the root.
    assert_eq!(
        p.plan(1, &chain_rows, CatchUp::none(), Some(&long)),
        Plan::Plain
    );
}

#[test]
fn lookup_that_stops_paying_is_probed_with_one_draft_ever_more_rarely() {
    let mut p = head_never_pays();
    let long = chain(4, 1);
    // After a 1-token match the prior (a quarter) does not pay for a row that costs a step.
    let mut probes = Vec::new();
    for round in 0..200 {
        match p.plan(100, &chain_rows, CatchUp::none(), Some(&long)) {
            Plan::Lookup { drafts } => {
                assert_eq!(drafts, 1);
                probes.push(round);
                let (cut, choice) = p.lookup_choice(&long, drafts);
                p.observe_acceptance(&choice, &cut, &[0]);
            }
            Plan::Plain => {}
            Plan::Tree(_) => {}
        }
    }
    // Waits of 8, 16, 32 and 64 rounds with a match; the head's own probes take a round now
    // and then without counting.
    assert_eq!(probes, vec![7, 23, 56, 123]);
    // With lookup off, a match changes nothing; a longer chain than the largest tree is cut.
    let mut off = head_never_pays();
    off.options.lookup = 0;
    assert!(off.lookup().is_none());
    let huge = AutoTreeOptions {
        lookup: usize::MAX,
        ..AutoTreeOptions::default()
    };
    let p = AutoTree::new(huge, CostModel::new(vec![(1, 1.0)], 1, 0.0));
    let max = huge.max.total_tokens - 1;
    assert_eq!(p.lookup().map(|l| l.num_draft), Some(max));
}

#[test]
fn a_paying_match_class_does_not_hasten_the_probes_of_another() {
    // A row costs 0.3 steps: after a 3-token match (prior ½) a draft pays, after a 1-token one
    // (prior ⅙) it does not. Blocks of one 3-token match, always accepted, then 20 rounds with
    // 1-token matches, always rejected when probed: the 1-token probes wait 8, 16, 32, 64 … of
    // their own rounds, whatever the 3-token class does meanwhile.
    let mut p = head_never_pays();
    let mut costs = CostModel::new(vec![(1, 1.0), (2, 1.3), (64, 20.0)], 5, 1.0);
    for f in 1..=5 {
        costs.observe(f, 0, 1.0 * f as f64, 0.0, 0.0);
    }
    p.costs = costs.with_alpha(0.0);
    let (long, short) = (chain(1, 3), chain(1, 1));
    let mut probes = Vec::new();
    let mut short_rounds = 0;
    for _ in 0..10 {
        let plan = p.plan(100, &chain_rows, CatchUp::none(), Some(&long));
        assert_eq!(plan, Plan::Lookup { drafts: 1 }, "a 3-token match pays");
        let (cut, choice) = p.lookup_choice(&long, 1);
        p.observe_acceptance(&choice, &cut, &[0, 1]);
        for _ in 0..20 {
            match p.plan(100, &chain_rows, CatchUp::none(), Some(&short)) {
                // The head's own probe takes the round; the match does not count.
                Plan::Tree(t) => {
                    let (tree, scores) = drafted(t);
                    p.choose(&tree, &scores, t.depth + 1, &chain_rows);
                }
                Plan::Lookup { drafts } => {
                    short_rounds += 1;
                    probes.push(short_rounds);
                    let (cut, choice) = p.lookup_choice(&short, drafts);
                    p.observe_acceptance(&choice, &cut, &[0]);
                }
                Plan::Plain => short_rounds += 1,
            }
        }
    }
    assert_eq!(probes, vec![8, 24, 56, 120]);
}
