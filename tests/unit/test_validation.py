"""Generated code is untrusted: the static checks and the rule each rejection names."""

import pytest

from neuromosaic_core.codegen import CodeRejected, extract_code, generate_validated_code, validate_code
from neuromosaic_core.interfaces import CodeGenProvider, CodeGenRequest
from neuromosaic_core.model import ArchitectureSpec, Layer

GOOD = '''
import math
import torch
from torch import nn
import torch.nn.functional as F

HIDDEN = 32


class Net(nn.Module):
    """A small MLP."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.fc = nn.Linear(40, HIDDEN)
        self.head = torch.nn.Linear(HIDDEN, 10)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.fc(x)) * math.sqrt(1.0)
        return self.head(torch.flatten(x, 1))


if __name__ == "__main__":
    print(Net())
'''


def test_good_code_passes():
    validate_code(GOOD)


def rule_of(code: str) -> str:
    with pytest.raises(CodeRejected) as info:
        validate_code(code)
    return info.value.rule


NET = "\nclass Net(nn.Module):\n    def forward(self, x):\n        return x\n"


@pytest.mark.parametrize(
    ("snippet", "rule"),
    [
        ("import os\nfrom torch import nn" + NET, "import"),
        ("import subprocess\nfrom torch import nn" + NET, "import"),
        ("from torch import nn\nimport socket" + NET, "import"),
        ("from torch.utils import cpp_extension\nfrom torch import nn" + NET, "import"),
        ("import torch.multiprocessing\nfrom torch import nn" + NET, "import"),
        ("from os import *\nfrom torch import nn" + NET, "import"),
        ("from torch import nn\nfrom torch import load" + NET, "attribute"),
        ("import torch\nfrom torch import nn\nW = torch.load" + NET, "attribute"),
        ("import torch\nfrom torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return torch.hub.load('a', 'b')\n", "attribute"),
        ("import torch\nfrom torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return torch.ops.load_library('x.so')\n", "attribute"),
        ("import torch\nfrom torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        torch.save(x, 'f')\n        return x\n", "attribute"),
        ("import torch\nfrom torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return torch._C._x(x)\n", "attribute"),
        ("import torch\nfrom torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return torch.from_file('/etc/passwd')\n", "attribute"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return nn.utils.parametrize\n", "attribute"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return eval('x')\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        exec('1')\n        return x\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return open('f').read()\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return __import__('os')\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return getattr(x, 'y')\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return compile('1', 'f', 'eval')\n", "builtin"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return x.__class__.__subclasses__()\n", "dunder"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return '{0.__class__}'.format(x)\n", "dunder"),
        ("from torch import nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return __builtins__\n", "builtin"),
        ("from torch import nn\nprint('hi')" + NET, "top_level"),
        ("from torch import nn\nX = nn.Linear(2, 2)" + NET, "top_level"),
        ("from torch import nn\nclass Model(nn.Module):\n    def forward(self, x):\n        return x\n", "missing_net"),
        ("from torch import nn\nclass Net:\n    def forward(self, x):\n        return x\n", "missing_net"),
        ("from torch import nn\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n", "missing_forward"),
        ("from torch import nn\nclass Net(nn.Module):\n    def __init__(self, width):\n        super().__init__()\n"
         "    def forward(self, x):\n        return x\n", "net_init_args"),
        ("from torch import nn\nclass Net(nn.Module:\n", "syntax"),
    ],
)
def test_each_rule_fires(snippet, rule):
    assert rule_of(snippet) == rule


def test_rejection_names_rule_and_line():
    with pytest.raises(CodeRejected) as info:
        validate_code("from torch import nn\n\nimport os\n" + NET)
    assert str(info.value).startswith("[import] import of 'os' is not allowed")
    assert info.value.line == 3


def test_extract_code_takes_the_fenced_block_with_net():
    answer = "Sure! Here is the model:\n```python\nimport torch\n```\nand\n```python\n" + GOOD + "```\nHope it helps."
    assert "class Net" in extract_code(answer)
    validate_code(extract_code(answer))


def test_extract_code_without_fences_returns_the_text():
    assert extract_code(GOOD).strip() == GOOD.strip()


class Scripted(CodeGenProvider):
    """Answers from a script, records the feedback it was given."""

    def __init__(self, answers):
        self.answers, self.feedback = list(answers), []

    def generate_code(self, request: CodeGenRequest) -> str:
        self.feedback.append(request.feedback)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


# GOOD is faithful to this spec (the pipeline probes untrusted code and compares it with the spec).
REQUEST = CodeGenRequest(ArchitectureSpec("mlp", [Layer("linear", {"out_features": 32}), Layer("activation", {"fn": "relu"})]), (40,), 10)


def test_repair_loop_feeds_the_rejection_back():
    provider = Scripted(["no code here, sorry", ConnectionError("server went away"), "```python\n" + GOOD + "```"])
    outcome = generate_validated_code(provider, REQUEST, attempts=3, provider_name="llm")
    assert outcome.provider == "llm" and outcome.attempts == 3
    assert provider.feedback[0] is None and provider.feedback[1].startswith("[syntax]")
    assert "provider error: ConnectionError" in outcome.rejections[1]


def test_fallback_is_used_after_the_attempts_run_out():
    outcome = generate_validated_code(Scripted(["import os"] * 2), REQUEST, attempts=2, fallback=Scripted([GOOD]), fallback_name="template")
    assert outcome.provider == "template" and len(outcome.rejections) == 2


def test_without_fallback_the_failure_lists_the_reasons():
    from neuromosaic_core.codegen import CodeGenFailed

    with pytest.raises(CodeGenFailed, match=r"\[import\]"):
        generate_validated_code(Scripted(["import os"] * 2), REQUEST, attempts=2)


@pytest.mark.parametrize(
    "body",
    [
        "return F.relu.__globals__.get('torch')",
        "return nn.Linear.__class__.mro()",
        "return F.torch.hub.list('x')",
        "return torch.nn.init.torch.hub",
        "return nn.functional.torch.utils",
        "return typing.sys.modules['os']",
        "t = torch\n        return t.hub",
        "return self.fc.weight.storage()",
        "return F.np.fromfile('/etc/passwd')",
        "return F.np.ctypeslib.load_library('x', '.')",
        "return typing.contextlib",
        "return x.numpy().tofile('out')",
    ],
)
def test_module_reexports_aliases_and_mid_chain_dunders_are_refused(body):
    code = ("import typing\nimport torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
            f"class Net(nn.Module):\n    def forward(self, x):\n        {body}\n")
    assert rule_of(code) in ("dunder", "attribute")


def test_top_level_alias_of_a_module_is_refused():
    assert rule_of("import torch\nfrom torch import nn\nT = torch" + NET) in ("top_level", "attribute")


def test_a_bare_annotation_and_common_parameter_names_are_fine():
    validate_code("from torch import nn\nx: int\nclass Net(nn.Module):\n    def forward(self, input):\n        return input\n")
