"""Demo zoo: a pretrained backbone fine-tuned on several tasks, built offline on a CPU.

Text zoo: all-MiniLM-L6-v2 fine-tuned on topic, sentiment, language and emoticon tasks.
Image zoo: EfficientNet-Lite0 fine-tuned on Fashion-MNIST, Animal-MNIST and digits.
Build with `build_zoo("text", "quick")` or `python3 -m tadrop.zoo build --zoo text --size quick`;
open with `load_zoo(...)`. docs/zoo.md lists the tasks, accuracies and licences.
"""

from tadrop.zoo.build import build_zoo, is_built
from tadrop.zoo.errors import CorruptZooError, MissingSourceError, UnsafePickleError, ZooError
from tadrop.zoo.load import Zoo, load_zoo, tadrop_home, zoo_path
from tadrop.zoo.recipes import RECIPES, SIZES, ZOOS, Recipe

__all__ = [
    "RECIPES",
    "SIZES",
    "ZOOS",
    "CorruptZooError",
    "MissingSourceError",
    "Recipe",
    "UnsafePickleError",
    "Zoo",
    "ZooError",
    "build_zoo",
    "is_built",
    "load_zoo",
    "tadrop_home",
    "zoo_path",
]
