//! The shape of a speculative tree: tokens, parents and depths, with the derived children and
//! root-to-leaf paths. Drafters produce it, verifiers consume it; it is plain host data.

/// A draft tree: node 0 is the root.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DraftTree {
    /// Target token ids, root first.
    pub tokens: Vec<u32>,
    /// Parent node of each node (`None` for the root); parents precede children.
    pub parents: Vec<Option<usize>>,
    /// Depth of each node (root 0): its position offset after the accepted prefix.
    pub depths: Vec<usize>,
}

impl DraftTree {
    /// A tree of the root alone.
    pub fn root_only(root: u32) -> Self {
        Self {
            tokens: vec![root],
            parents: vec![None],
            depths: vec![0],
        }
    }

    /// Number of nodes, root included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the tree is empty (never: the root is always there).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Children of each node, in node order (= draft order).
    pub fn children(&self) -> Vec<Vec<usize>> {
        let mut c = vec![Vec::new(); self.len()];
        for (i, p) in self.parents.iter().enumerate() {
            if let Some(p) = p {
                c[*p].push(i);
            }
        }
        c
    }

    /// Root-to-leaf node paths, one per leaf in increasing leaf index (`retrieve_indices`).
    pub fn paths(&self) -> Vec<Vec<usize>> {
        let children = self.children();
        (0..self.len())
            .filter(|&i| children[i].is_empty())
            .map(|leaf| {
                let mut path = vec![leaf];
                while let Some(p) = self.parents[*path.last().expect("non-empty")] {
                    path.push(p);
                }
                path.reverse();
                path
            })
            .collect()
    }
}
