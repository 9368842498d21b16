"""Reading option files: one clear error for a missing file, a YAML syntax error (file, line, column), a key written
twice in one mapping (YAML would keep the last one and drop the other in silence) or a file that holds no options.
Every tool that takes ``-opt`` reads through here; the runners check the syntax here too before basicsr parses the
file."""
from basicsr_restore.core.errors import OptionError


def yaml_problem(exc):
    """A YAML error in one line: ``line 12, column 5: mapping values are not allowed here``."""
    mark = getattr(exc, 'problem_mark', None) or getattr(exc, 'context_mark', None)
    where = f'line {mark.line + 1}, column {mark.column + 1}: ' if mark is not None else ''
    what = ' '.join(str(part) for part in (getattr(exc, 'context', None), getattr(exc, 'problem', None)) if part)
    return where + (what or str(exc).strip().splitlines()[0])


def _repeated_key(node):
    """``(key node, first line)`` of the first key written twice in one mapping under ``node``, or None."""
    import yaml
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen = {}
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.value != '<<':
                    if key.value in seen:
                        return key, seen[key.value]
                    seen[key.value] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)
    return None


def check_yaml(path, what='-opt'):
    """One :class:`OptionError` for a missing file, a YAML syntax error (file, line, column) or a key written twice in
    one mapping; else the file's content, as ``yaml.safe_load`` gives it (the file is parsed once)."""
    import os

    import yaml
    if not os.path.isfile(path):
        raise OptionError(f"{what} '{path}' does not exist (absolute: {os.path.abspath(path)}).")
    with open(path, encoding='utf-8') as f:
        try:
            root = yaml.compose(f)
        except yaml.YAMLError as exc:
            raise OptionError(f"{what} '{path}' is not valid YAML: {yaml_problem(exc)}.") from None
    repeated = _repeated_key(root)
    if repeated:
        key, first = repeated
        raise OptionError(f"{what} '{path}' line {key.start_mark.line + 1}, column {key.start_mark.column + 1}: key "
                          f"'{key.value}' is written twice in one block (first on line {first}); YAML would keep "
                          'this one and drop the other in silence. Keep one.')
    return None if root is None else yaml.SafeLoader('').construct_document(root)


def read_option_file(path, what='-opt'):
    """An option file as a dict, with one clear error for a missing file, bad YAML or a file that is no mapping."""
    opt = check_yaml(path, what)
    if not isinstance(opt, dict):
        raise OptionError(f"{what} '{path}' does not hold options (a YAML mapping such as `name: ...`).")
    return opt
