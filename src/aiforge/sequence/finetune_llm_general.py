"""What `sequence.finetune-llm` checks and rehearses so the model keeps what it knew.

Two disjoint sets, written before any fine-tuned model was scored:

- GENERAL_QUESTIONS: the no-collapse check. Short factual questions a 135 M chat model
  plausibly knows, each with the words any right answer contains (lower case; one of them
  suffices). Only the questions the base model answers right count: `general_retained` is
  the share of those the fine-tuned model still answers right. 60 questions, of which
  SmolLM2-135M-Instruct answers about 45 right, so one flip moves the score by ~2 points.
- REHEARSAL_PROMPTS: generic instructions (advice, how-to, short writing, definitions) the
  base model answers greedily before training; those (prompt, base answer) pairs are mixed
  into the training batches (self-distillation rehearsal against catastrophic forgetting;
  McCloskey and Cohen, 1989; Robins, 1995, "pseudo-rehearsal"). They hold no question of the
  check and no trivia of its kind, so the check measures transfer, not memorised answers.
"""

from __future__ import annotations

GENERAL_QUESTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # geography
    ("What is the capital of France?", ("paris",)),
    ("What is the capital of Japan?", ("tokyo",)),
    ("What is the capital of Italy?", ("rome",)),
    ("What is the capital of Germany?", ("berlin",)),
    ("What is the capital of Spain?", ("madrid",)),
    ("What is the capital of the United Kingdom?", ("london",)),
    ("What is the capital of Russia?", ("moscow",)),
    ("What is the capital of China?", ("beijing",)),
    ("What is the capital of Egypt?", ("cairo",)),
    ("What is the capital of Canada?", ("ottawa",)),
    ("What is the tallest mountain in the world?", ("everest",)),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What is the longest river in the world?", ("nile", "amazon")),
    ("What is the largest country in the world by area?", ("russia",)),
    ("What language is mostly spoken in Brazil?", ("portuguese",)),
    ("What language is mostly spoken in Mexico?", ("spanish",)),
    ("In which country is the Great Wall?", ("china",)),
    ("In which city is the Eiffel Tower?", ("paris",)),
    ("In which city is the Statue of Liberty?", ("new york",)),
    ("On which continent is Kenya?", ("africa",)),
    ("What is the currency of Japan?", ("yen",)),
    # science
    ("Which planet is known as the Red Planet?", ("mars",)),
    ("What is the largest planet in our solar system?", ("jupiter",)),
    ("Which planet is closest to the Sun?", ("mercury",)),
    ("What is the star at the center of our solar system?", ("sun",)),
    ("What is the chemical formula of water?", ("h2o", "h₂o")),
    ("What gas do plants take in from the air to make food?", ("carbon dioxide", "co2", "co₂")),
    ("What gas do humans need to breathe to stay alive?", ("oxygen",)),
    ("At what temperature in degrees Celsius does water boil at sea level?", ("100",)),
    ("What does a caterpillar turn into?", ("butterfl", "moth")),
    ("What is the hardest natural substance?", ("diamond",)),
    ("Which organ pumps blood through the human body?", ("heart",)),
    ("What is the largest organ of the human body?", ("skin",)),
    ("What force makes objects fall to the ground?", ("gravity", "gravitation")),
    ("What is the opposite of hot?", ("cold",)),
    # people and culture
    ("Who wrote Romeo and Juliet?", ("shakespeare",)),
    ("Who wrote Hamlet?", ("shakespeare",)),
    ("Who painted the Mona Lisa?", ("leonardo", "da vinci")),
    ("Who developed the theory of relativity?", ("einstein",)),
    ("Who was the first person to walk on the Moon?", ("armstrong",)),
    ("Who was the first president of the United States?", ("washington",)),
    ("Who wrote the Harry Potter books?", ("rowling",)),
    ("Who proposed the theory of evolution by natural selection?", ("darwin",)),
    ("Which musical instrument has 88 keys?", ("piano",)),
    # numbers
    ("How many days are there in a week?", ("seven", "7")),
    ("How many legs does a spider have?", ("eight", "8")),
    ("How many legs does an insect have?", ("six", "6")),
    ("How many months are there in a year?", ("twelve", "12")),
    ("How many hours are there in a day?", ("twenty-four", "24")),
    ("How many minutes are there in an hour?", ("sixty", "60")),
    ("How many continents are there?", ("seven", "7")),
    ("How many degrees are there in a right angle?", ("ninety", "90")),
    # everyday knowledge
    ("What color is the sky on a clear day?", ("blue",)),
    ("What color is grass?", ("green",)),
    ("What color is a ripe banana?", ("yellow",)),
    ("What do bees make?", ("honey",)),
    ("What is the fastest land animal?", ("cheetah",)),
    ("What is the largest animal on Earth?", ("blue whale",)),
    ("What is a baby dog called?", ("puppy", "puppies")),
    ("What is a baby cat called?", ("kitten",)),
)

REHEARSAL_PROMPTS: tuple[str, ...] = (
    "Give me three tips for staying healthy.",
    "Write a short poem about the sea.",
    "Explain what a verb is.",
    "How do I make a cup of tea?",
    "Suggest a name for a pet goldfish.",
    "What are some good habits for studying?",
    "Describe a sunny day in two sentences.",
    "How can I save money each month?",
    "Write a thank-you note to a friend.",
    "What should I pack for a beach trip?",
    "Explain why exercise is good for you.",
    "Give me an idea for a birthday party.",
    "How do I politely decline an invitation?",
    "What is a good way to start the morning?",
    "Summarize the benefits of reading books.",
    "How do I boil an egg?",
    "Write a sentence using the word 'happy'.",
    "What is friendship?",
    "Why is sleep important?",
    "Give me a simple idea for dinner.",
    "How do I plant a tree?",
    "What makes a good teacher?",
    "How can I be more productive at work?",
    "Write the opening line of a story about a dragon.",
    "What are the benefits of drinking water?",
    "How do I write a good email?",
    "Explain what a computer does.",
    "Give me advice for a job interview.",
    "What is the difference between weather and climate?",
    "Why do people recycle?",
    "How can I calm down when I feel stressed?",
    "Hello! How are you today?",
)


def answer_has(answer: str, keywords: tuple[str, ...]) -> bool:
    """Whether a reply contains one of the accepted words (case-insensitive substring)."""
    text = answer.lower()
    return any(word in text for word in keywords)
