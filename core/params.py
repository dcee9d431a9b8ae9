"""Task parameters: built-ins, resolution across the four layers (global < upstream outputs <
start-up < task-local), ``${name}``/``$[...]`` expansion, the environment a task gets, and the
quoted substitution of parameters into a SHELL command. Pure, no I/O."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo

from core.datepattern import format_java
from core.errors import ValidationError
from core.timeexpr import evaluate, local_time, shift_days

MAX_DEPTH = 100  # how deep ${a} -> ${b} -> ... may nest
MAX_VALUE = 1 << 20  # a resolved value longer than this is refused (no exponential blow-up)
_TOKEN_RE = re.compile(r"\$\{(?P<ref>[A-Za-z_][A-Za-z0-9_.]*)\}|\$\[(?P<expr>[^\]\n]*)\]")
_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_.]*)\}")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_DIGITS = re.compile(r"^[0-9\s]*[0-9][0-9\s]*$")

BIZ_DATE, BIZ_CURDATE, DATETIME = "system.biz.date", "system.biz.curdate", "system.datetime"


def builtins(base_time: datetime, tz: str | tzinfo) -> dict[str, str]:
    """The built-in parameters of a run whose base time is ``base_time``, in zone ``tz``."""
    t = local_time(base_time, tz)
    return {
        BIZ_DATE: format_java("yyyyMMdd", shift_days(t, -1)),
        BIZ_CURDATE: format_java("yyyyMMdd", t),
        DATETIME: format_java("yyyyMMddHHmmss", t),
    }


def merge_upstream_outputs(
    depends_on: Iterable[str], outputs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The setValue outputs of a task's direct upstream tasks; on a key set by two of them, the
    upstream named later in ``depends_on`` wins."""
    merged: dict[str, str] = {}
    for up in depends_on:
        merged.update({str(k): str(v) for k, v in outputs.get(up, {}).items()})
    return merged


def _time_token(expr: str, base: datetime, tz: str | tzinfo) -> str | None:
    """The value of ``$[expr]``; None when it is left alone: a ``$`` still in it or a single digit
    (``$[1]``), as DolphinScheduler leaves them, and text with no letter outside '...' quotes
    (bash's obsolete ``$[1+2]`` arithmetic, SQL such as ``CONCAT('$[', i, ']')``). Digits only
    (``$[12]``) are a pattern of literal digits: themselves, as in DolphinScheduler."""
    if "$" in expr or re.fullmatch(r"[0-9]", expr):
        return None
    if _DIGITS.match(expr):
        return expr
    if not _HAS_LETTER.search(re.sub(r"'[^']*'", "", expr)):
        return None
    return evaluate(expr.strip(), base, tz)


def expand(
    template: str,
    lookup: Callable[[str], str | None],
    base_time: datetime,
    tz: str | tzinfo,
) -> str:
    """Replace ``${name}`` (when ``lookup`` knows it) and ``$[...]`` in ``template``; inside
    ``$[...]`` references are expanded first. Unknown ``${x}`` stays as it is."""

    def ref(m: re.Match[str]) -> str:
        v = lookup(m.group(1))
        return m.group(0) if v is None else v

    def token(m: re.Match[str]) -> str:
        if m.group("ref") is not None:
            return ref(m)
        inner = _REF_RE.sub(ref, m.group("expr"))
        v = _time_token(inner, base_time, tz)
        return m.group(0) if v is None else v

    return _TOKEN_RE.sub(token, template)


def resolve_task_params(
    global_: Mapping[str, str],
    upstream_outputs: Mapping[str, str],
    startup: Mapping[str, str],
    local: Mapping[str, str],
    base_time: datetime,
    tz: str | tzinfo,
) -> dict[str, str]:
    """Every parameter a task sees, fully resolved. A later layer wins on a name: built-ins <
    global < upstream outputs < start-up < task-local. Values of global, start-up and local
    parameters are templates (``${name}`` of any parameter, ``$[...]``), resolved recursively;
    upstream outputs and built-ins are literal data. Raises ValidationError naming the parameter
    on a cycle or a bad time expression."""
    layers: dict[str, tuple[str, bool]] = {
        k: (v, False) for k, v in builtins(base_time, tz).items()
    }
    for values, template in ((global_, True), (upstream_outputs, False), (startup, True)):
        layers.update({str(k): (str(v), template) for k, v in values.items()})
    layers.update({str(k): (str(v), True) for k, v in local.items()})

    done: dict[str, str] = {}
    stack: list[str] = []

    def resolve(name: str) -> str:
        if name in done:
            return done[name]
        if name in stack:
            cycle = [*stack[stack.index(name) :], name]
            raise ValidationError(
                "parameter cycle: " + " -> ".join(f"${{{n}}}" for n in cycle),
                {"cycle": cycle},
            )
        if len(stack) >= MAX_DEPTH:
            raise ValidationError(f"parameter {name!r}: references nest deeper than {MAX_DEPTH}")
        raw, template = layers[name]
        if template and "$" in raw:
            stack.append(name)
            try:
                value = expand(raw, lambda r: resolve(r) if r in layers else None, base_time, tz)
            except ValidationError as exc:
                if exc.details and isinstance(exc.details, dict) and "cycle" in exc.details:
                    raise
                if exc.message.startswith("parameter "):
                    raise
                raise ValidationError(f"parameter {name!r}: {exc.message}") from None
            finally:
                stack.pop()
        else:
            value = raw
        if len(value) > MAX_VALUE:
            raise ValidationError(f"parameter {name!r}: value longer than {MAX_VALUE} characters")
        done[name] = value
        return value

    return {name: resolve(name) for name in layers}


def params_to_env(params: Mapping[str, str]) -> dict[str, str]:
    """Environment variables for the parameters: each under its own name, and a name that is not
    a shell identifier (``system.biz.date``) also under a safe alias (``system_biz_date``) unless
    a parameter has that name itself."""
    env: dict[str, str] = {}
    for name, value in params.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise ValidationError(
                f"parameter {name!r} cannot be passed in the environment ('=' or NUL byte)"
            )
        env[name] = value
    for name, value in params.items():
        if not _IDENT_RE.match(name):
            alias = re.sub(r"[^A-Za-z0-9_]", "_", name)
            alias = alias if not alias[0].isdigit() else "_" + alias
            if alias not in params:
                env.setdefault(alias, value)
    return env


# SHELL substitution ----------------------------------------------------------------------------

_SAFE = re.compile(r"^[\w@%+=:,./-]+$", re.ASCII)
_WORD_END = " \t\n;&|()<>"


def quote_for(kind: str, value: str) -> str:
    """``value`` written so that, in shell context ``kind``, it reads back as itself and can never
    start a command. Unquoted (top, $( ), $(( ))): shlex.quote; inside ` `: the same with \\ ` $
    escaped; inside "...": a backslash before \\ $ ` "; inside '...': ' becomes '\\''; inside
    $'...': the quote is closed around shlex.quote; in a here-document body: a backslash before
    \\ $ ` (none with a quoted delimiter), and a line break is refused (it could end the body)."""
    if _SAFE.match(value):
        return value
    if kind in ("top", "cmd", "arith"):
        return shlex.quote(value)
    if kind == "bq":  # ` ` drops one level of \\ before \\ ` $
        return re.sub(r"([\\$`])", r"\\\1", shlex.quote(value))
    if kind == "dq":
        return re.sub(r'([\\$`"])', r"\\\1", value)
    if kind == "sq":
        return value.replace("'", "'\\''")
    if kind == "ansi":
        return "'" + shlex.quote(value) + "$'"
    if "\n" in value or "\r" in value:
        raise ValidationError("a value with a line break cannot be substituted in a here-document")
    if kind == "heredoc":
        return re.sub(r"([\\$`])", r"\\\1", value)
    return value  # heredoc_q: quoted delimiter, the body is literal


def render_shell(
    command: str, params: Mapping[str, str], base_time: datetime, tz: str | tzinfo
) -> str:
    """``command`` with ``${name}`` of known (dotted too, e.g. ``${system.biz.date}``) parameters
    and ``$[...]`` time expressions replaced, each value quoted for the shell context it lands in
    (see quote_for). Comments are left alone; unknown ``${x}`` is left to bash, which sees every
    parameter as an environment variable too."""
    return _Renderer(command, params, base_time, tz).run()


@dataclass
class _Frame:
    kind: str
    depth: int = 0  # open parentheses inside $( ) or $(( ))
    cases: int = 0  # open case statements inside $( )
    delim: str = ""  # here-document: the delimiter line, and whether tabs are stripped (<<-)
    strip: bool = False


class _Renderer:
    """A small bash lexer: a stack of contexts (top, "...", '...', $'...', $( ), $(( )), ` `,
    comments, here-documents) deciding how each substituted value is quoted."""

    def __init__(
        self, src: str, params: Mapping[str, str], base: datetime, tz: str | tzinfo
    ) -> None:
        self.s, self.params, self.base, self.tz = src, params, base, tz
        self.out: list[str] = []
        self.stack: list[_Frame] = [_Frame("top")]
        self.pending: list[tuple[str, bool, bool]] = []  # here-documents opened on this line

    def run(self) -> str:
        s, i, n = self.s, 0, len(self.s)
        while i < n:
            frame = self.stack[-1]
            kind = frame.kind
            if kind.startswith("heredoc") and (i == 0 or s[i - 1] == "\n"):
                end = s.find("\n", i)
                line = s[i : n if end < 0 else end]
                if (line.lstrip("\t") if frame.strip else line) == frame.delim:
                    self.out.append(line)
                    self.stack.pop()
                    i += len(line)
                    continue
            if kind == "comment":
                if s[i] == "\n":
                    self.stack.pop()
                    continue
                self.out.append(s[i])
                i += 1
                continue
            if s[i] == "$":
                j = self._substitute(i, kind)
                if j > i:
                    i = j
                    continue
            i = self._step(i, kind, frame)
        return "".join(self.out)

    def _substitute(self, i: int, kind: str) -> int:
        m = _TOKEN_RE.match(self.s, i)
        if not m:
            return i
        if m.group("ref") is not None:
            value = self.params.get(m.group("ref"))
        else:
            inner = _REF_RE.sub(lambda r: self.params.get(r.group(1), r.group(0)), m.group("expr"))
            value = _time_token(inner, self.base, self.tz)
        if value is None:
            return i
        self.out.append(quote_for(kind, value))
        return m.end()

    def _push(self, kind: str, text: str, i: int) -> int:
        self.stack.append(_Frame(kind))
        self.out.append(text)
        return i + len(text)

    def _step(self, i: int, kind: str, frame: _Frame) -> int:
        s, c = self.s, self.s[i]
        two, three = s[i : i + 2], s[i : i + 3]
        if kind == "sq":
            if c == "'":
                self.stack.pop()
        elif kind in ("ansi", "dq", "bq", "heredoc") and c == "\\":
            self.out.append(s[i : i + 2])
            return i + 2
        elif kind == "ansi":
            if c == "'":
                self.stack.pop()
        elif kind in ("dq", "heredoc", "bq", "top", "cmd", "arith") and (
            three == "$((" or two == "$(" or c == "`"
        ):
            if kind == "bq" and c == "`":
                self.stack.pop()
            elif three == "$((":
                return self._push("arith", three, i)
            else:
                return self._push("cmd" if two == "$(" else "bq", two if two == "$(" else c, i)
        elif kind == "dq":
            if c == '"':
                self.stack.pop()
        elif kind == "arith":
            if two == "))" and frame.depth == 0:
                self.stack.pop()
                self.out.append(two)
                return i + 2
            frame.depth += (c == "(") - (c == ")")
        elif kind in ("top", "cmd", "bq"):
            return self._unquoted(i, kind, frame)
        self.out.append(c)
        return i + 1

    def _unquoted(self, i: int, kind: str, frame: _Frame) -> int:
        s, c = self.s, self.s[i]
        if c == "\\":
            self.out.append(s[i : i + 2])
            return i + 2
        if c == "'":
            return self._push("sq", c, i)
        if c == '"':
            return self._push("dq", c, i)
        if s.startswith("$'", i):
            return self._push("ansi", "$'", i)
        if s.startswith("((", i) and kind != "bq":
            return self._push("arith", "((", i)
        if c == "#" and (i == 0 or s[i - 1] in _WORD_END):
            self.stack.append(_Frame("comment"))
            return i
        if kind == "cmd" and (i == 0 or s[i - 1] in _WORD_END):
            word = re.match(r"(case|esac)(?=[ \t\n;&|()<>]|$)", s[i:])
            if word:  # a case pattern's ')' does not close $( )
                frame.cases += 1 if word.group(1) == "case" else -1
        if kind == "cmd" and c in "()" and frame.cases <= 0:
            if c == ")" and frame.depth == 0:
                self.stack.pop()
            else:
                frame.depth += 1 if c == "(" else -1
        if s.startswith("<<", i) and not s.startswith("<<<", i):
            return self._heredoc_op(i)
        self.out.append(c)
        if c == "\n" and self.pending:
            delim, strip, quoted = self.pending.pop(0)
            self.stack.append(
                _Frame("heredoc_q" if quoted else "heredoc", delim=delim, strip=strip)
            )
        return i + 1

    def _heredoc_op(self, i: int) -> int:
        """Copy ``<<[-] word`` and remember the document it opens (from the next line on)."""
        s, j = self.s, i + 2
        strip = s.startswith("-", j)
        j += strip
        while j < len(s) and s[j] in " \t":
            j += 1
        start, quote = j, ""
        while j < len(s) and (quote or s[j] not in _WORD_END):
            if quote:
                quote = "" if s[j] == quote else quote
            elif s[j] in "'\"":
                quote = s[j]
            elif s[j] == "\\":
                j += 1
            j += 1
        word = s[start:j]
        if word:
            delim = re.sub(r"""\\(.)|['"]""", lambda m: m.group(1) or "", word)
            self.pending.append((delim, strip, any(q in word for q in "'\"\\")))
        self.out.append(s[i:j])
        return j
