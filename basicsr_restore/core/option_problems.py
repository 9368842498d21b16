"""The problems of one option tree, collected so that a run reports them all at once, one line each (the option,
the value, what is allowed, what to do). The option check (``option_checks``) walks the sections and fills one
:class:`Problems`."""
import difflib
import inspect

from basicsr_restore.core.errors import OptionError
from basicsr_restore.core.option_rules import Path, Text, signature_rules

ALLOW = 'allow_unknown_keys'


def closest(name, candidates):
    match = difflib.get_close_matches(str(name), sorted(map(str, candidates)), n=1, cutoff=0.6)
    return f"did you mean '{match[0]}'? " if match else ''


def accepted_names(fn, skip=(), strict=False):
    """Keyword arguments ``fn`` (a function or class) takes, or None when it takes ``**kwargs`` and not
    ``strict`` (then any key may be meant for it)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    names = set()
    for p in params:
        if p.kind is p.VAR_KEYWORD and not strict:
            return None
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            names.add(p.name)
    return names - set(skip)


class Problems:
    """Collects the problems of one option tree; ``allow`` is the value of ``allow_unknown_keys``; ``paths``: check
    that the files and folders the options name exist (``skip_paths``: option paths not to check)."""

    def __init__(self, allow, paths=True):
        if allow not in (None, True, False) and not isinstance(allow, (list, tuple)):
            raise OptionError(f'{ALLOW} must be true, false or a list of keys such as [train.my_key], got {allow!r}.')
        self.allow_all = allow is True
        self.allowed = [str(a) for a in allow] if isinstance(allow, (list, tuple)) else []
        self.items = []
        self.unknown_keys = 0
        self.paths, self.skip_paths = paths, set()

    def add(self, where, text):
        self.items.append(f'{where}: {text}.' if not text.endswith('.') else f'{where}: {text}')

    def allows(self, where):
        return self.allow_all or any(where == a or where.startswith(a + '.') for a in self.allowed)

    def keys(self, section, known, where, owner):
        """Report every key of ``section`` not in ``known`` (``owner``: who reads that section)."""
        if not isinstance(section, dict):
            if section is not None:
                self.items.append(f'{where}: expected a mapping of options, got {section!r}.')
            return
        for key in section:
            path = f'{where}.{key}' if where else str(key)
            if key not in known and not self.allows(path):
                self.unknown_keys += 1
                self.items.append(f"{path}: unknown key, not read by {owner}; {closest(key, known)}"
                                  f"valid: {', '.join(sorted(map(str, known))) or 'none in this version'}.")

    def values(self, section, rules, where, owner=None, unknown=True):
        """Report the values of ``section`` that their rules refuse, missing required keys and (``unknown``) keys
        not in ``rules`` (``owner`` reads them). True when every value passed."""
        if unknown and owner is not None:
            self.keys(section, rules, where, owner)
        if not isinstance(section, dict):
            return False
        before = len(self.items)
        for key, rule in rules.items():
            path = f'{where}.{key}' if where else str(key)
            if key not in section:
                if rule.required:
                    self.add(path, f'missing; {owner or where} needs it ({rule.describe()})')
                continue
            problem = rule.problem(section[key])
            if problem:
                self.add(path, problem)
            elif isinstance(rule, Path) and section[key] is not None and self.paths and path not in self.skip_paths:
                missing = rule.missing(section[key])
                if missing:
                    self.add(path, f'{missing}; fix the path' + (
                        ' or prepare the data (`basicsr-restore prepare ...`, see datasets/README.md)'
                        if path.startswith('datasets.') else ''))
        return len(self.items) == before

    def type_name(self, spec, registry, where, what):
        """The class/function named by ``spec['type']`` in ``registry``, or None (problem recorded)."""
        name = spec.get('type') if isinstance(spec, dict) else None
        if name is None:
            self.items.append(f'{where}.type: missing; name the {what} (e.g. {sorted(registry.keys())[:3]}).')
            return None
        if name in registry:
            return registry.get(name)
        self.items.append(f"{where}.type: {name!r} is not a registered {what}; {closest(name, registry.keys())}"
                          f"registered: {', '.join(sorted(registry.keys()))}.")
        return None

    def arguments(self, spec, fn, where, owner, skip=(), extra=None, strict=False):
        """Unknown arguments of ``fn`` (unless it takes ``**kwargs``), then the values its signature types."""
        before = len(self.items)
        rules = {**signature_rules(fn, skip), **(extra if extra is not None else {'type': Text()})}
        known = accepted_names(fn, skip, strict)
        if known is not None:
            self.keys(spec, set(known) | set(rules), where, owner)
            if isinstance(spec, dict) and set(spec) - set(known) - set(rules):
                return False  # keys let through by allow_unknown_keys: fn would not take them
        return self.values(spec, rules, where, owner, unknown=False) and len(self.items) == before


def optional(rule):
    """A copy of ``rule`` that may be left out."""
    import copy
    rule = copy.copy(rule)
    rule.required = False
    return rule


def own_check(problems, cls, spec, where):
    """A class of this package may check the files its arguments name: ``check_files(kwargs)`` returns
    ``[(argument, problem)]``."""
    for key, text in getattr(cls, 'check_files', lambda _: [])({k: v for k, v in spec.items() if k != 'type'}):
        problems.add(f'{where}.{key}', text)
