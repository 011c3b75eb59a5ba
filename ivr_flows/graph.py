"""A flow as a diagram: Mermaid text, and an SVG laid out here (layers from the start node, no outside tools)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from ivr_flows.schema import (
    FLOW_REF_PREFIX,
    Flow,
    GotoStep,
    HangupStep,
    HoursStep,
    InputStep,
    LookupStep,
    MenuStep,
    PlayStep,
    QueueStep,
    RecordStep,
    SayStep,
    SetStep,
    SwitchLanguageStep,
    VoicemailStep,
)


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: str
    title: str
    lines: tuple[str, ...]
    kind: str  # start, menu, hours, queue, voicemail, hangup, flow (another flow), node


@dataclass(frozen=True, slots=True)
class GraphEdge:
    source: str
    target: str
    label: str


@dataclass(frozen=True, slots=True)
class FlowGraph:
    flow: str
    start: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]


def _summary(step: object) -> str | None:
    match step:
        case PlayStep():
            return "play " + ", ".join(step.prompts)
        case MenuStep():
            return f"menu {', '.join(step.prompt)} ({step.retries} retries, {step.timeout:g}s)"
        case InputStep():
            return f"input {step.var} ({step.min_digits}-{step.max_digits} keys)"
        case SayStep():
            return f"say {step.format} {step.value}"
        case LookupStep():
            return f"lookup product by {step.code}"
        case HoursStep():
            return f"hours {step.schedule}"
        case QueueStep():
            priority = f", priority {step.priority}" if step.priority is not None else ""
            return f"queue {step.queue} ({step.reason}{priority})"
        case VoicemailStep():
            return f"voicemail {step.intent} (up to {step.max_seconds}s)"
        case RecordStep():
            return f"record ({step.reason})"
        case SetStep():
            return "set " + ", ".join(f"{key}={value}" for key, value in step.values.items())
        case SwitchLanguageStep():
            return f"switch language ({step.to})"
        case HangupStep():
            return "hangup"
        case GotoStep():
            return None
    return None


_EDGE_LABELS = {"on_fail": "fail", "not_found": "not found", "target": ""}


def build_graph(flow: Flow) -> FlowGraph:
    nodes: list[GraphNode] = []
    edges: dict[tuple[str, str], list[str]] = {}
    external: dict[str, GraphNode] = {}
    for node_id, steps in flow.nodes.items():
        lines = tuple(line for line in (_summary(step) for step in steps) if line)
        last = steps[-1]
        kinds = {step.KIND for step in steps}
        if node_id == flow.start_node:
            kind = "start"
        elif isinstance(last, QueueStep):
            kind = "queue"
        elif "voicemail" in kinds:
            kind = "voicemail"
        elif isinstance(last, HangupStep):
            kind = "hangup"
        elif isinstance(last, MenuStep | HoursStep):
            kind = last.KIND
        else:
            kind = "node"
        nodes.append(GraphNode(node_id, node_id, lines, kind))
        for step in steps:
            for field_name, target in step.targets():
                if target.startswith(FLOW_REF_PREFIX):
                    name = target.removeprefix(FLOW_REF_PREFIX)
                    target_id = f"flow__{name}"
                    external.setdefault(target_id, GraphNode(target_id, f"flow {name}", (), "flow"))
                else:
                    target_id = target
                label = field_name.removeprefix("options.") if field_name.startswith("options.") else field_name
                label = _EDGE_LABELS.get(label, label)
                labels = edges.setdefault((node_id, target_id), [])
                if label and label not in labels:
                    labels.append(label)
    all_nodes = (*nodes, *external.values())
    known = {node.id for node in all_nodes}
    edge_list = tuple(
        GraphEdge(source, target, ", ".join(labels)) for (source, target), labels in edges.items() if target in known
    )
    return FlowGraph(flow.name, flow.start_node, all_nodes, edge_list)


# -- Mermaid --------------------------------------------------------------------------------------------


def _mermaid_text(text: str) -> str:
    # Mermaid's own entity codes; '#' starts one, so it is escaped first.
    return (
        text.replace("#", "#35;").replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;").replace("|", "#124;")
    )


def _mermaid_id(node_id: str) -> str:
    return f"n_{node_id}"


_MERMAID_STYLES = {
    "start": "fill:#dbeafe,stroke:#1d4ed8",
    "menu": "fill:#f1f5f9,stroke:#475569",
    "hours": "fill:#fef9c3,stroke:#a16207",
    "queue": "fill:#dcfce7,stroke:#15803d",
    "voicemail": "fill:#ffedd5,stroke:#c2410c",
    "hangup": "fill:#e5e7eb,stroke:#374151",
    "flow": "fill:#ede9fe,stroke:#6d28d9",
    "node": "fill:#ffffff,stroke:#475569",
}


def to_mermaid(graph: FlowGraph) -> str:
    lines = [f"%% IVR flow {graph.flow} (generated by `callcenter flows graph`)", "flowchart TD"]
    for node in graph.nodes:
        label = "<br/>".join([f"<b>{_mermaid_text(node.title)}</b>", *(_mermaid_text(line) for line in node.lines)])
        shape = ('[["', '"]]') if node.kind == "flow" else ('["', '"]')
        lines.append(f"    {_mermaid_id(node.id)}{shape[0]}{label}{shape[1]}")
    for edge in graph.edges:
        arrow = f'-->|"{_mermaid_text(edge.label)}"|' if edge.label else "-->"
        lines.append(f"    {_mermaid_id(edge.source)} {arrow} {_mermaid_id(edge.target)}")
    for kind, style in _MERMAID_STYLES.items():
        lines.append(f"    classDef {kind} {style}")
    for node in graph.nodes:
        lines.append(f"    class {_mermaid_id(node.id)} {node.kind}")
    return "\n".join(lines) + "\n"


# -- SVG ------------------------------------------------------------------------------------------------

_CHAR_W = 6.8
_LINE_H = 16
_PAD = 10
_GAP_X = 36
_GAP_Y = 64
_MARGIN = 30
_MAX_ROW = 1400.0
_LOOP_ROOM = 40.0
_SVG_FILL = {
    "start": ("#dbeafe", "#1d4ed8"),
    "menu": ("#f1f5f9", "#475569"),
    "hours": ("#fef9c3", "#a16207"),
    "queue": ("#dcfce7", "#15803d"),
    "voicemail": ("#ffedd5", "#c2410c"),
    "hangup": ("#e5e7eb", "#374151"),
    "flow": ("#ede9fe", "#6d28d9"),
    "node": ("#ffffff", "#475569"),
}


@dataclass(slots=True)
class _Box:
    node: GraphNode
    layer: int
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0


def _layers(graph: FlowGraph) -> dict[str, int]:
    """Breadth-first distance from the start; nodes it cannot reach go in a last layer."""
    out_edges: dict[str, list[str]] = {}
    for edge in graph.edges:
        out_edges.setdefault(edge.source, []).append(edge.target)
    layer = {graph.start: 0}
    queue = deque([graph.start])
    while queue:
        current = queue.popleft()
        for target in out_edges.get(current, []):
            if target not in layer:
                layer[target] = layer[current] + 1
                queue.append(target)
    last = max(layer.values(), default=0) + 1
    for node in graph.nodes:
        layer.setdefault(node.id, last)
    return layer


def _layout(graph: FlowGraph) -> tuple[dict[str, _Box], float, float]:
    """Layers top to bottom; a layer wider than the page wraps onto more rows."""
    layer = _layers(graph)
    boxes = {node.id: _Box(node, layer[node.id]) for node in graph.nodes}
    layers: dict[int, list[_Box]] = {}
    for box in sorted(boxes.values(), key=lambda b: b.layer):
        texts = [box.node.title, *box.node.lines]
        box.w = max(120.0, max(len(text) for text in texts) * _CHAR_W + 2 * _PAD)
        box.h = len(texts) * _LINE_H + 2 * _PAD
        layers.setdefault(box.layer, []).append(box)
    rows: list[list[_Box]] = []
    for index in sorted(layers):
        row: list[_Box] = []
        used = 0.0
        for box in layers[index]:
            if row and used + _GAP_X + box.w > _MAX_ROW:
                rows.append(row)
                row, used = [], 0.0
            used += (_GAP_X if row else 0.0) + box.w
            row.append(box)
        rows.append(row)
    row_widths = [sum(b.w for b in row) + _GAP_X * (len(row) - 1) for row in rows]
    inner = max(row_widths, default=0.0)
    width = inner + 2 * _MARGIN + _LOOP_ROOM
    y = float(_MARGIN)
    for row, row_width in zip(rows, row_widths, strict=True):
        x = _MARGIN + (inner - row_width) / 2
        for box in row:
            box.x, box.y = x, y
            x += box.w + _GAP_X
        y += max(b.h for b in row) + _GAP_Y
    return boxes, width, y - _GAP_Y + _MARGIN


Point = tuple[float, float]


def _bezier(p0: Point, p1: Point, p2: Point, p3: Point, t: float) -> Point:
    u = 1 - t
    x = u**3 * p0[0] + 3 * u * u * t * p1[0] + 3 * u * t * t * p2[0] + t**3 * p3[0]
    y = u**3 * p0[1] + 3 * u * u * t * p1[1] + 3 * u * t * t * p2[1] + t**3 * p3[1]
    return x, y


def _edge_path(source: _Box, target: _Box) -> tuple[str, float, float]:
    """The curve of one edge, and where its label goes: near the target, so a menu's keys do not pile up."""
    if target.y > source.y:
        p0 = (source.x + source.w / 2, source.y + source.h)
        p3 = (target.x + target.w / 2, target.y)
        bend = min(40.0, (p3[1] - p0[1]) / 2)
        p1, p2 = (p0[0], p0[1] + bend), (p3[0], p3[1] - bend)
        t = 0.7
    elif target.y < source.y:
        # Back up to an earlier row: leave from the top, arrive at the bottom.
        p0 = (source.x + source.w * 0.7, source.y)
        p3 = (target.x + target.w * 0.7, target.y + target.h)
        p1, p2 = (p0[0], p0[1] - 40), (p3[0], p3[1] + 40)
        t = 0.5
    else:
        # The same row: an arc over the top.
        p0 = (source.x + source.w / 2, source.y)
        p3 = (target.x + target.w / 2, target.y)
        lift = 24 + min(60.0, abs(p3[0] - p0[0]) / 8)
        p1, p2 = (p0[0], p0[1] - lift), (p3[0], p3[1] - lift)
        t = 0.5
    lx, ly = _bezier(p0, p1, p2, p3, t)
    path = f"M {p0[0]:.1f} {p0[1]:.1f} C {p1[0]:.1f} {p1[1]:.1f}, {p2[0]:.1f} {p2[1]:.1f}, {p3[0]:.1f} {p3[1]:.1f}"
    return path, lx, ly


def to_svg(graph: FlowGraph) -> str:
    boxes, width, height = _layout(graph)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
        f"<title>IVR flow {escape(graph.flow)}</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#475569"/></marker></defs>',
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
    ]
    labels: list[str] = []
    for edge in graph.edges:
        path, lx, ly = _edge_path(boxes[edge.source], boxes[edge.target])
        out.append(f'<path d="{path}" fill="none" stroke="#475569" stroke-width="1.2" marker-end="url(#arrow)"/>')
        if edge.label:
            text_w = len(edge.label) * _CHAR_W + 8
            labels.append(
                f'<rect x="{lx - text_w / 2:.1f}" y="{ly - 9:.1f}" width="{text_w:.1f}" height="16" rx="3" '
                f'fill="#ffffff" stroke="#cbd5e1"/>'
                f'<text x="{lx:.1f}" y="{ly + 3:.1f}" text-anchor="middle" fill="#0f172a">{escape(edge.label)}</text>'
            )
    for box in boxes.values():
        fill, stroke = _SVG_FILL.get(box.node.kind, _SVG_FILL["node"])
        out.append(
            f'<g><rect x="{box.x:.1f}" y="{box.y:.1f}" width="{box.w:.1f}" height="{box.h:.1f}" rx="6" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        )
        ty = box.y + _PAD + 12
        title = escape(box.node.title)
        out.append(f'<text x="{box.x + _PAD:.1f}" y="{ty:.1f}" font-weight="bold" fill="#0f172a">{title}</text>')
        for line in box.node.lines:
            ty += _LINE_H
            out.append(f'<text x="{box.x + _PAD:.1f}" y="{ty:.1f}" fill="#334155">{escape(line)}</text>')
        out.append("</g>")
    out.extend(labels)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_graph(flow: Flow, out_dir: Path) -> tuple[Path, Path]:
    """Writes ``<flow>.mmd`` and ``<flow>.svg`` into ``out_dir``; returns both paths."""
    graph = build_graph(flow)
    out_dir.mkdir(parents=True, exist_ok=True)
    mermaid = out_dir / f"{flow.name}.mmd"
    svg = out_dir / f"{flow.name}.svg"
    mermaid.write_text(to_mermaid(graph), encoding="utf-8")
    svg.write_text(to_svg(graph), encoding="utf-8")
    return mermaid, svg
