"""English for messages: the article a type or dtype name takes ("create an Adam", "a uint8 array")."""
from __future__ import annotations


def a(noun) -> str:
    """'an Adam', 'an SGD', 'an int64', 'an array_api_strict.Array', 'a numpy.ndarray', 'a uint8', 'a BCELoss': by
    the sound of the first letter (a 'u' read as "you" takes 'a'; an acronym is read letter by letter)."""
    word = str(noun)
    first = word[:1].lower()
    if word[:2].isupper():      # an acronym, read letter by letter: 'an SGD', 'an RMSprop', 'a BCELoss'
        vowel = first in "aefhilmnorsx"
    else:
        vowel = first in "aeio" or (first == "u" and not word.lower().startswith(("uint", "uni", "use", "usu")))
    return f"{'an' if vowel else 'a'} {word}"
