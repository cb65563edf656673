"""Text and voices for the lip-sync data: seeded random word sequences for training, fixed natural
sentences and unseen voices for evaluation.

Training text is random word sequences over a vocabulary chosen to cover English phonemes, with
clause punctuation so espeak-ng inserts pauses; the held-out sentences are natural English and
share no sentence with training. Held-out voices are espeak-ng accents and variants that no
training utterance uses.
"""

from __future__ import annotations

import numpy as np

VOCABULARY = """
a about above across after again air all almost alone along also always am among an and animal
another answer any apple are arm around as ask at away baby back bad bag ball bank be bear beat
because bed been before began begin behind below best better between big bird black blue boat
body book both box boy bread bring brother brown build busy but buy by call came can car care
carry cat catch change child choose city clean close cloth cold come cook cool could country cup
cut dark day deep did do does dog done door down draw dream drink drive dry each early earth
east eat egg eight end enough even ever every eye face fall family far farm fast father feel
few field find fine fire first fish five floor fly food foot for four free fresh friend from
full fun game garden gave girl give glass go gold good got great green ground grow had hair half
hand happy hard has hat have he head hear heart heavy help her here high hill him his hold home
hope horse hot house how huge hundred I ice if in inside into is it its job join joy judge jump
just keep key kind king kitchen knew know lady lake land large last late laugh learn leave left
leg less letter life light like line lion lip listen little live long look loud love low lunch
made make man many map march me meet men milk mind mine miss moon more morning most mother
mouth move much music must my name near need never new next nice night nine no noise north
not nothing now number of off often oil old on once one only open or orange other our out over
own page paper park part pass path pay people pick piece pink place plan play please pocket
point poor push put queen quick quiet rain ran reach read ready red rich ride right ring river
road rock room round rule run sad safe said salt same sat save saw say school sea see seem sell
send seven shape she ship shoe shop short should show shut sing sister sit six sky sleep slow
small smile snow so soft some song soon sound south speak spoon spring square stand star start
stay step stick still stone stop story street strong such summer sun sure sweet swim table take
talk tall teach tell ten than thank that the their them then there these they thing think
this those three through throw time tiny to today together told too took top touch town tree
true try turn two under up upon us use very visit voice wait walk wall want warm was wash watch
water wave way we wear weather week well went were west wet what wheel when where which white
who why wide will wind window winter wish with woman wood word work world would write yellow
yes yet you young your zoo zero
""".split()

HELD_OUT_SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
]

TRAIN_VOICES = ["en-us", "en-gb", "en-gb-x-rp", "en-029", "en-us-nyc"]
TRAIN_VARIANTS = ["", "+m1", "+m3", "+f1", "+f3", "+f4", "+m5"]
HELD_OUT_VOICES = ["en-gb-scotland+f2", "en-gb-x-gbclan+m2", "en-gb-x-gbcwmd+f5", "en-us+m7"]


def random_sentence(rng: np.random.Generator, min_words: int = 4, max_words: int = 14) -> str:
    """A random word sequence with clause punctuation (pauses) at random places."""
    n = int(rng.integers(min_words, max_words + 1))
    words = list(rng.choice(VOCABULARY, size=n))
    out = []
    for i, w in enumerate(words):
        out.append(w)
        if i < n - 1 and rng.random() < 0.12:
            out[-1] += str(rng.choice([",", ".", ";", "?"]))
    text = " ".join(out)
    return text[0].upper() + text[1:] + str(rng.choice([".", "?", "!"]))


def random_voice(rng: np.random.Generator) -> str:
    """A training voice: accent + variant (never one of HELD_OUT_VOICES)."""
    return str(rng.choice(TRAIN_VOICES)) + str(rng.choice(TRAIN_VARIANTS))
