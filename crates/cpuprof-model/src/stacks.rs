//! Interned frames and stacks.
//!
//! A profile holds many thousands of samples whose stacks share most of their frames. Frames
//! are stored once in a table; stacks are nodes of a prefix tree (each node = parent stack +
//! one frame), so a stack is a single `u32` and common prefixes cost nothing.

use rustc_hash::FxHashMap;

use serde::{Deserialize, Serialize};

/// Index into [`StackTable::frames`].
pub type FrameId = u32;
/// Index into [`StackTable::nodes`]; a stack is identified by its leaf node.
pub type StackId = u32;

/// What kind of code a frame stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameKind {
    /// Machine code in a process's user space (a function of an executable or library).
    Native,
    /// A Python function (name, file and line from the interpreter).
    Python,
    /// Kernel code.
    Kernel,
}

/// One function in a stack.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// Native, Python or kernel.
    pub kind: FrameKind,
    /// Function name, demangled. For an address without a symbol: `library+0xOFFSET`.
    pub name: String,
    /// Library or executable path (native), or source file path (Python).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Source line (Python frames).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The source file as its user knows it (Python frames): relative to the `sys.path`
    /// entry it was imported from (`multiprocessing/process.py`, as py-spy shows it), where
    /// `module` keeps the full path. Labels use it; without it, the base name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_file: Option<String>,
}

impl Frame {
    /// The module's base name (`/usr/lib/libopenblas.so.0` -> `libopenblas.so.0`).
    pub fn module_name(&self) -> Option<&str> {
        self.module
            .as_deref()
            .map(|m| m.rsplit('/').next().unwrap_or(m))
    }

    /// The label used in flamegraphs and collapsed stacks: `name` for native frames,
    /// `name (package/file.py:line)` for Python frames.
    pub fn label(&self) -> String {
        let file = self.short_file.as_deref().or(self.module_name());
        match (self.kind, file, self.line) {
            (FrameKind::Python, Some(file), Some(line)) => format!("{} ({file}:{line})", self.name),
            (FrameKind::Python, Some(file), None) => format!("{} ({file})", self.name),
            _ => self.name.clone(),
        }
    }
}

/// Frames and stacks of a profile, interned.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StackTable {
    /// All distinct frames.
    pub frames: Vec<Frame>,
    /// Stack nodes: `(parent, frame)`; the root node of a stack has no parent.
    pub nodes: Vec<(Option<StackId>, FrameId)>,
    #[serde(skip)]
    frame_index: FxHashMap<Frame, FrameId>,
    #[serde(skip)]
    node_index: FxHashMap<(Option<StackId>, FrameId), StackId>,
}

impl StackTable {
    /// Returns the id of `frame`, adding it if it is new.
    pub fn intern_frame(&mut self, frame: Frame) -> FrameId {
        self.intern_frame_ref(&frame)
    }

    /// [`StackTable::intern_frame`] of a borrowed frame: copied only when it is new.
    pub fn intern_frame_ref(&mut self, frame: &Frame) -> FrameId {
        self.ensure_index();
        if let Some(&id) = self.frame_index.get(frame) {
            return id;
        }
        let id = self.frames.len() as FrameId;
        self.frames.push(frame.clone());
        self.frame_index.insert(frame.clone(), id);
        id
    }

    /// Returns the id of the stack made of `frames` (root first), adding nodes as needed.
    /// An empty slice has no stack: `None`.
    pub fn intern_stack(&mut self, frames: &[FrameId]) -> Option<StackId> {
        self.ensure_index();
        let mut parent = None;
        for &f in frames {
            let key = (parent, f);
            let id = match self.node_index.get(&key) {
                Some(&id) => id,
                None => {
                    let id = self.nodes.len() as StackId;
                    self.nodes.push(key);
                    self.node_index.insert(key, id);
                    id
                }
            };
            parent = Some(id);
        }
        parent
    }

    /// The frames of a stack, root first.
    pub fn frames_of(&self, stack: StackId) -> Vec<FrameId> {
        let mut out = Vec::new();
        let mut cur = Some(stack);
        while let Some(id) = cur {
            let Some(&(parent, frame)) = self.nodes.get(id as usize) else {
                break;
            };
            out.push(frame);
            cur = parent;
        }
        out.reverse();
        out
    }

    /// The leaf (innermost) frame of a stack.
    pub fn leaf(&self, stack: StackId) -> Option<&Frame> {
        let &(_, f) = self.nodes.get(stack as usize)?;
        self.frames.get(f as usize)
    }

    /// The frame with this id.
    pub fn frame(&self, id: FrameId) -> &Frame {
        &self.frames[id as usize]
    }

    /// Checks that every node points at an existing frame and an earlier parent (a loaded file
    /// could say anything).
    pub fn validate(&self) -> Result<(), String> {
        for (i, &(parent, frame)) in self.nodes.iter().enumerate() {
            if frame as usize >= self.frames.len() {
                return Err(format!(
                    "stack node {i} names frame {frame}, which does not exist"
                ));
            }
            if parent.is_some_and(|p| p as usize >= i) {
                return Err(format!("stack node {i} has a parent that is not before it"));
            }
        }
        Ok(())
    }

    fn ensure_index(&mut self) {
        if self.frame_index.len() != self.frames.len() {
            self.frame_index = self
                .frames
                .iter()
                .enumerate()
                .map(|(i, f)| (f.clone(), i as FrameId))
                .collect();
        }
        if self.node_index.len() != self.nodes.len() {
            self.node_index = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, &k)| (k, i as StackId))
                .collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native(name: &str) -> Frame {
        Frame {
            kind: FrameKind::Native,
            name: name.into(),
            module: None,
            line: None,
            short_file: None,
        }
    }

    #[test]
    fn shared_prefixes_share_nodes() {
        let mut t = StackTable::default();
        let (a, b, c) = (
            t.intern_frame(native("a")),
            t.intern_frame(native("b")),
            t.intern_frame(native("c")),
        );
        let s1 = t.intern_stack(&[a, b]).unwrap();
        let s2 = t.intern_stack(&[a, c]).unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.frames_of(s1), vec![a, b]);
        assert_eq!(t.frames_of(s2), vec![a, c]);
        assert_eq!(t.leaf(s2).unwrap().name, "c");
        assert_eq!(t.intern_stack(&[]), None);
    }

    #[test]
    fn index_is_rebuilt_after_deserialising() {
        let mut t = StackTable::default();
        let a = t.intern_frame(native("a"));
        t.intern_stack(&[a, a]);
        let mut back: StackTable =
            serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.intern_frame(native("a")), a);
        assert_eq!(back.intern_stack(&[a, a]), Some(1));
        assert_eq!(back.nodes.len(), 2);
    }

    #[test]
    fn python_label_has_file_and_line() {
        let f = Frame {
            kind: FrameKind::Python,
            name: "train_step".into(),
            module: Some("/src/model.py".into()),
            line: Some(88),
            short_file: None,
        };
        assert_eq!(f.label(), "train_step (model.py:88)");
    }
}
