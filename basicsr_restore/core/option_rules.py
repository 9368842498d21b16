"""What each option key may hold, as data: the one source for the option check and for ``basicsr-restore schema``.

A :class:`Rule` says which values a key takes (a type, a range, a list of words, a file that must exist). It writes
the one-line problem of a bad value (:meth:`Rule.problem`) and the key's JSON Schema (:meth:`Rule.schema`); the
option check (``option_checks``) and the editor schema (``schema``) read the same rules, so they cannot disagree.

Keys are declared where they are read: ``OPTION_KEYS`` of the model and of each dataset, the loader and runner keys in
``option_checks``, the speed switches in ``speed``. Constructor arguments of networks, losses, optimizers and
schedulers are read from their signatures (:func:`signature_rules`): an annotation, else the type of the default,
says what the argument takes (a default of ``None`` says nothing); a class of this package may add stricter rules in
``OPTION_RULES``.

Plain Python: importable by every layer (archs, data, models) without importing basicsr.
"""
import inspect
import math
import os
import typing

#: how YAML 1.1 (PyYAML) reads ``1e-4``: as text, since a float needs a dot (``1.0e-4``) or ``!!float``
_YAML_FLOAT_HINT = " (YAML reads 1e-4 as text: write 1.0e-4 or !!float 1e-4)"


def yaml_word(value):
    """``value`` as written in YAML: ``true``, ``~``, ``bf16``."""
    return {True: 'true', False: 'false', None: '~'}.get(value, str(value)) if not isinstance(value, (int, float)) \
        or isinstance(value, bool) else str(value)


def show(value):
    """A value as the user wrote it, short: ``'four'``, ``-5``, ``[0.9, 1.5]``."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + '...'


def _number_text(value):
    """True for text that YAML 1.1 left unread as a number (``'1e-4'``, ``'2e5'``)."""
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


class Rule:
    """What one key takes. ``null``: ``~`` is allowed (it means "not set"); ``hint``: what to do, said after the
    problem. Subclasses say what a value is (:meth:`fits`) and how to describe and schematise it."""

    #: a constructor argument without a default (:func:`signature_rules`)
    required = False

    def __init__(self, null=False, hint='', means=''):
        self.null, self.hint, self.means = null, hint, means

    def fits(self, value):
        raise NotImplementedError

    def describe(self):
        raise NotImplementedError

    def json(self):
        raise NotImplementedError

    def problem(self, value):
        """``None`` when ``value`` is allowed, else why not and what to do, in one sentence."""
        if value is None:
            return None if self.null else f'a value is required: {self.describe()}'
        if self.fits(value):
            return None
        said = self.means or self.describe()
        extra = _YAML_FLOAT_HINT if _number_text(value) and 'number' in said else ''
        hint = f'; {self.hint}' if self.hint else ''
        return f'{show(value)} is not allowed: expected {said}{extra}{hint}'

    def schema(self):
        body = self.json()
        if self.null:
            return {'anyOf': [body, {'type': 'null'}]}
        return body


class Number(Rule):
    """A number (``whole``: a whole number) within ``minimum``/``maximum`` (inclusive) and ``above``/``below``
    (exclusive)."""

    def __init__(self, minimum=None, maximum=None, above=None, below=None, whole=False, **kw):
        super().__init__(**kw)
        self.minimum, self.maximum, self.above, self.below, self.whole = minimum, maximum, above, below, whole

    def fits(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.whole and value != int(value):
            return False
        return ((self.minimum is None or value >= self.minimum) and (self.maximum is None or value <= self.maximum)
                and (self.above is None or value > self.above) and (self.below is None or value < self.below))

    def describe(self):
        bounds = [f'>= {self.minimum}' if self.minimum is not None else '', f'> {self.above}' if self.above is not
                  None else '', f'<= {self.maximum}' if self.maximum is not None else '',
                  f'< {self.below}' if self.below is not None else '']
        bounds = ' and '.join(b for b in bounds if b)
        return ('a whole number' if self.whole else 'a number') + (f' {bounds}' if bounds else '')

    def json(self):
        body = {'type': 'integer' if self.whole else 'number'}
        for key, value in (('minimum', self.minimum), ('maximum', self.maximum), ('exclusiveMinimum', self.above),
                           ('exclusiveMaximum', self.below)):
            if value is not None:
                body[key] = value
        return body


def Int(minimum=None, maximum=None, **kw):  # noqa: N802 (reads like a type in the tables of keys)
    return Number(minimum, maximum, whole=True, **kw)


class Bool(Rule):
    def fits(self, value):
        return isinstance(value, bool)

    def describe(self):
        return 'true or false'

    def json(self):
        return {'type': 'boolean'}


class Text(Rule):
    def fits(self, value):
        return isinstance(value, str)

    def describe(self):
        return 'text'

    def json(self):
        return {'type': 'string'}


class Choice(Rule):
    """One of ``choices`` (words or numbers; ``None`` among them allows ``~``)."""

    def __init__(self, *choices, **kw):
        super().__init__(null=kw.pop('null', None in choices), **kw)
        self.choices = tuple(c for c in choices if c is not None)

    def fits(self, value):
        return any(value == c and type(value) is type(c) for c in self.choices)  # noqa: E721 (1 is not True)

    def describe(self):
        words = list(dict.fromkeys(yaml_word(c) for c in self.choices))
        return words[0] if len(words) == 1 else ', '.join(words[:-1]) + ' or ' + words[-1]

    def json(self):
        return {'enum': list(self.choices)}


class Path(Rule):
    """A path; ``must_exist`` (``'file'``, ``'folder'`` or ``'any'``) is checked by :meth:`missing` when a run
    starts (relative paths are relative to the current directory, as basicsr opens them)."""

    def __init__(self, must_exist='any', **kw):
        super().__init__(**kw)
        self.must_exist = must_exist

    def fits(self, value):
        return isinstance(value, str) and value != ''

    def describe(self):
        return {'file': 'the path of a file', 'folder': 'the path of a folder'}.get(self.must_exist, 'a path')

    def json(self):
        return {'type': 'string', 'minLength': 1}

    def missing(self, value):
        """Why ``value`` (a path that fits) cannot be used, or None."""
        if not os.path.exists(value):
            return f"'{value}' does not exist (absolute: {os.path.abspath(value)})"
        if self.must_exist == 'file' and not os.path.isfile(value):
            return f"'{value}' is a folder, not a file"
        if self.must_exist == 'folder' and not os.path.isdir(value):
            return f"'{value}' is a file, not a folder"
        return None


class Items(Rule):
    """A list of values that each follow ``item``; ``length``: exactly that many, ``at_least``: that many or more."""

    def __init__(self, item, length=None, at_least=0, **kw):
        super().__init__(**kw)
        self.item, self.length, self.at_least = item, length, at_least

    def fits(self, value):
        if not isinstance(value, (list, tuple)):
            return False
        if (self.length is not None and len(value) != self.length) or len(value) < self.at_least:
            return False
        return all(self.item.problem(v) is None for v in value)

    def describe(self):
        count = f'{self.length} ' if self.length is not None else ''
        return f'a list of {count}values, each {self.item.describe()}'

    def json(self):
        body = {'type': 'array', 'items': self.item.schema()}
        if self.length is not None:
            body.update(minItems=self.length, maxItems=self.length)
        elif self.at_least:
            body['minItems'] = self.at_least
        return body


class Mapping(Rule):
    """A mapping (a YAML block of keys); its keys are checked by whoever reads them."""

    def fits(self, value):
        return isinstance(value, dict)

    def describe(self):
        return 'a mapping of options (key: value lines)'

    def json(self):
        return {'type': 'object'}


class Either(Rule):
    """A value that follows one of ``rules``."""

    def __init__(self, *rules, **kw):
        super().__init__(null=kw.pop('null', any(r.null for r in rules)), **kw)
        self.rules = rules

    def fits(self, value):
        return any(r.problem(value) is None for r in self.rules)

    def describe(self):
        return ' or '.join(r.describe() for r in self.rules)

    def json(self):
        return {'anyOf': [r.json() for r in self.rules]}


class Anything(Rule):
    def __init__(self, **kw):
        super().__init__(null=True, **kw)

    def fits(self, value):
        return True

    def describe(self):
        return 'any value'

    def json(self):
        return {}


# ------------------------------------------------------------------------------------------- signatures
def _from_annotation(annotation):
    """The rule of a type annotation, or None when it says nothing this module can check."""
    if isinstance(annotation, str) or annotation is inspect.Parameter.empty:
        return None
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is bool:
        return Bool()
    if annotation is int:
        return Int()
    if annotation is float:
        return Number()
    if annotation is str:
        return Text()
    if origin is typing.Literal:
        return Choice(*args)
    if origin in (typing.Union, getattr(__import__('types'), 'UnionType', None)):
        parts = [_from_annotation(a) for a in args if a is not type(None)]
        if not parts or any(p is None for p in parts):
            return None
        rule = parts[0] if len(parts) == 1 else Either(*parts)
        rule.null = type(None) in args
        return rule
    if origin in (tuple, list) or (isinstance(origin, type) and issubclass(origin, typing.Sequence)):
        inner = [_from_annotation(a) for a in args if a is not Ellipsis]
        if not inner or any(p is None for p in inner):
            return None  # e.g. tuple[float | Tensor, ...]: the default says more
        item = inner[0] if len(set(map(type, inner))) == 1 else Either(*inner)
        fixed = origin is tuple and Ellipsis not in args
        return Items(item, length=len(args) if fixed else None)
    return None


def _from_default(default):
    """The rule a default value implies: its type (a number default takes any number)."""
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    if isinstance(default, float):
        return Number()
    if isinstance(default, str):
        return Text()
    if isinstance(default, (list, tuple)):
        kinds = {_from_default(v).describe() for v in default if v is not None}
        items = [_from_default(v) for v in default]
        if default and len(kinds) == 1 and all(i is not None for i in items):
            number = all(isinstance(i, Number) for i in items)
            return Items(Number() if number else items[0])
        return Items(Anything())
    return None


def signature_rules(fn, skip=()):
    """``{argument: rule}`` for the keyword arguments of ``fn`` (a class or function) that its signature types:
    annotated, or with a default of a plain type; ``OPTION_RULES`` of a class adds or overrides rules (a rule, or a
    tuple of the words the argument takes: plain-torch networks state them without importing this module). Arguments
    with a default may be left out; arguments without one are marked required (:data:`REQUIRED`)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return {}
    rules = {}
    for p in params:
        if p.name in skip or p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        rule = _from_annotation(p.annotation)
        if rule is None and p.default is not p.empty:
            rule = _from_default(p.default)
        if rule is None:
            rule = Anything()
        if p.default is None:
            rule.null = True
        rule.required = p.default is p.empty
        rules[p.name] = rule
    for name, rule in getattr(fn, 'OPTION_RULES', {}).items():
        rules[name] = Choice(*rule) if isinstance(rule, tuple) else rule
    return rules
