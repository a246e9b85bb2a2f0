"""Generate the project's synthetic English sentence list (corpus/sentences.txt).

Every sentence is built here from hand-written templates and word lists (nothing is copied from an
existing corpus). A seeded `random.Random` makes the output identical on every run, so the committed
file and its ids are reproducible:

    python voices/corpus/make_sentences.py                  # writes corpus/sentences.txt + corpus/test_ids.txt
    python voices/corpus/make_sentences.py --check          # regenerate and compare with the committed files

Output: one `id|text` line per sentence (ids `syn0001` ...). The text keeps digits, money, dates,
times, percentages and ordinals as written; build_corpus.py spells them out for the synthesiser.
Held-out test split: every id whose number is a multiple of `TEST_EVERY` (listed in test_ids.txt).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

SEED = 20261125
N_SENTENCES = 3000
TEST_EVERY = 30  # 3000 / 30 = 100 held-out sentences

# ---------------------------------------------------------------- vocabulary
# People carry their pronouns so that later clauses agree with them.
WOMEN = ["Anna", "Maria", "Helen", "Sarah", "Emily", "Grace", "Laura", "Rachel", "Julia", "Nora",
         "Alice", "Clara", "Lucy", "Martha", "Rose", "Diana", "Sophie", "Ellen", "Ruth", "Kate",
         "Linda", "Susan", "Amy", "Megan", "Hannah", "Irene", "Paula", "Vera", "Joan", "Lisa"]
MEN = ["David", "Peter", "James", "Thomas", "Daniel", "Henry", "Oliver", "Samuel", "George", "Mark",
       "Robert", "Simon", "Arthur", "Frank", "Edward", "Victor", "Paul", "Steven", "Walter", "Martin",
       "Carl", "Philip", "Adam", "Hugo", "Jacob", "Kevin", "Louis", "Nathan", "Oscar", "Ray"]
SURNAMES = ["Miller", "Turner", "Walsh", "Hughes", "Bennett", "Carter", "Fisher", "Harper", "Morgan",
            "Porter", "Reed", "Shaw", "Warren", "Palmer", "Hayes", "Lambert", "Ford", "Grant",
            "Nolan", "Price", "Stone", "Wells", "Baxter", "Cole"]
TITLES = ["Mr.", "Mrs.", "Dr."]
CITIES = ["Boston", "Denver", "Chicago", "London", "Paris", "Madrid", "Toronto", "Dublin", "Seattle",
          "Berlin", "Vienna", "Lisbon", "Sydney", "Houston", "Atlanta", "Oslo", "Prague", "Rome",
          "Phoenix", "Portland", "Glasgow", "Montreal", "Chicago", "Austin", "Athens", "Cairo"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# past-tense verb phrases; {pos} is replaced with the subject's possessive (her / his / their)
ACTIVITIES = [
    "fixed the leaking kitchen tap", "painted the garden fence", "repaired {pos} old bicycle",
    "wrote a long letter to an old friend", "cleaned the attic", "baked bread for the neighbours",
    "planted tomatoes behind the house", "read three chapters of a mystery novel",
    "walked the dog along the canal", "sorted the post", "ironed a pile of shirts",
    "washed the car in the driveway", "tidied {pos} desk", "called the plumber",
    "finished the crossword", "mended a torn curtain", "swept the front steps",
    "learned a new song on the piano", "built a small shelf for the hallway",
    "collected the children from school", "returned the library books",
    "cooked a large pot of vegetable soup", "packed {pos} suitcase", "watered the plants",
    "answered a dozen emails", "took the train into town", "visited the dentist",
    "climbed the hill behind the village", "sold {pos} old piano", "ordered new glasses",
    "polished the silver candlesticks", "replaced the broken window", "sewed a button on {pos} coat",
    "fed the ducks at the pond", "booked a table for dinner", "trimmed the hedge",
    "moved the sofa closer to the window", "drew a map of the neighbourhood",
    "counted the money in the till", "lost {pos} keys at the market",
]
# present-tense infinitive tasks (after "to", "please", "did you remember to")
TASKS = [
    "lock the back door", "turn off the oven", "feed the cat", "water the plants",
    "buy more milk", "call the landlord", "close the upstairs windows", "post the letter",
    "charge the laptop", "switch off the lights", "pay the electricity bill", "bring an umbrella",
    "book the tickets", "take the rubbish out", "check the tyres", "pick up the dry cleaning",
    "return the library books", "write down the address", "pack a warm jumper",
    "wind the clock", "put the milk back in the fridge", "let the dog out", "set the alarm",
    "thank the neighbours", "sign the form", "print the boarding passes", "ring the doctor",
]
PLACES = ["in the kitchen", "at the station", "by the river", "in the garden", "at the market",
          "in the old barn", "on the balcony", "near the harbour", "in the school hall",
          "at the corner shop", "in the village square", "on the top shelf", "under the bridge",
          "in the waiting room", "behind the church", "at the bus stop", "in the car park",
          "on the hillside", "outside the bakery", "in the museum"]
WHEN = ["yesterday afternoon", "last winter", "early on Sunday morning", "after lunch",
        "late last night", "two days ago", "at the weekend", "before breakfast", "this morning",
        "last summer", "on Friday evening", "a week ago", "just before dawn", "in the spring",
        "after the storm", "during the holidays", "at midnight", "on the first day of term"]
OBJECTS = ["umbrella", "ladder", "notebook", "camera", "blue scarf", "spare key", "map",
           "torch", "watering can", "sewing box", "wooden spoon", "picnic basket", "toolbox",
           "passport", "pair of gloves", "radio", "kettle", "wallet", "library card", "violin"]
ROOMS = ["kitchen", "hallway", "garage", "attic", "cellar", "living room", "bathroom", "study",
         "shed", "spare bedroom", "porch", "laundry room"]
# (things, where they are, a plausible largest count)
COUNTABLES = [("books", "library", 90000), ("chairs", "hall", 800), ("apples", "orchard", 20000),
              ("boxes", "warehouse", 50000), ("passengers", "train", 900), ("sheep", "field", 300),
              ("letters", "post office", 20000), ("bottles", "cellar", 3000),
              ("paintings", "gallery", 5000), ("trees", "park", 8000), ("cars", "car park", 2000),
              ("students", "school", 3000), ("seats", "theatre", 2500), ("bricks", "yard", 90000),
              ("photographs", "archive", 900000), ("jars", "pantry", 200), ("bees", "hive", 60000),
              ("rooms", "hotel", 900), ("plates", "cupboard", 80), ("visitors", "museum", 9000)]
ANIMALS = ["heron", "fox", "owl", "badger", "deer", "swan", "hedgehog", "squirrel", "otter",
           "rabbit", "hawk", "crow", "goat", "pony", "kitten", "puppy", "beaver", "seal"]
ADJ_GOOD = ["beautiful", "lovely", "wonderful", "splendid", "brilliant", "marvellous", "charming",
            "remarkable", "pleasant", "fantastic"]
ADJ_BAD = ["terrible", "awful", "dreadful", "strange", "miserable", "ridiculous", "horrible",
           "confusing", "disappointing"]
NOUNS_GOOD = ["morning", "view", "surprise", "idea", "garden", "sunset", "performance", "meal",
              "day", "story", "house", "song", "journey", "evening", "present"]
NOUNS_BAD = ["mess", "noise", "smell", "day", "journey", "idea", "performance", "story", "meal",
             "week", "mistake", "film"]
NATURE_PLACES = ["under the hedge", "in the long grass", "on the riverbank", "beside the path",
                 "in the old barn", "on the garden wall", "among the reeds", "near the gate"]
WEATHER_WHEN = ["all afternoon", "for most of the day", "on Tuesday", "this morning", "yesterday",
                "last week", "after lunch", "for an hour", "on and off all weekend"]
MEETING_PLACES = ["at the station", "at the harbour", "at the town hall", "at the airport",
                  "at the ferry terminal", "at the hotel"]
BUILDINGS = ["library", "museum", "post office", "town hall", "gallery", "cinema", "theatre",
             "hotel", "railway station", "concert hall"]
FEATURES = ["clock tower", "wooden floors", "stained glass windows", "marble staircase",
            "painted ceiling", "iron gates"]
WEATHER_IF = [("rain", "stops"), ("wind", "drops"), ("snow", "melts"), ("fog", "lifts"),
              ("storm", "passes")]
UNLESS = ["the roads are icy", "the train is cancelled", "it rains all day", "the hall is flooded",
          "the power goes out", "fewer than ten people turn up", "the speaker is ill",
          "the bridge is closed"]
FOODS = ["flour", "sugar", "rice", "oats", "butter", "milk", "water", "lentils", "honey", "cream"]
EVENTS = ["meeting", "concert", "wedding", "football match", "school play", "book sale",
          "board meeting", "charity dinner", "village fair", "job interview", "lecture",
          "art exhibition", "garden party", "spelling contest", "piano recital"]
VEHICLES = ["bus", "train", "ferry", "last tram", "coach", "taxi"]
VENUES = ["library", "museum", "post office", "swimming pool", "bank", "pharmacy", "bakery",
          "town hall", "gallery", "cinema", "market", "dentist"]
ITEMS_PRICE = ["the red coat", "a return ticket", "the second-hand bicycle", "the old lamp",
               "a loaf of bread", "the concert ticket", "a new kettle", "the painting",
               "a bag of apples", "the taxi ride", "the repair", "a box of chocolates",
               "the wooden table", "a pair of boots", "the garden chairs", "the hotel room"]
WEATHER = [("rain", "drummed on the roof"), ("wind", "howled through the valley"),
           ("snow", "fell silently over the town"), ("fog", "rolled in from the sea"),
           ("sun", "broke through the clouds"), ("thunder", "rumbled in the distance"),
           ("frost", "covered the fields"), ("hail", "rattled against the windows"),
           ("mist", "hung over the lake"), ("storm", "passed to the north")]
REASONS = ["the roads were icy", "nobody had a key", "the shop had closed early",
           "the train was delayed", "it had been raining all week", "the bridge was under repair",
           "the power had gone out", "the map was out of date", "everyone was tired",
           "the ticket machine was broken", "the lift was out of order",
           "the car would not start", "the tickets had sold out", "the phone line was busy",
           "the river had flooded the lower path", "the guests were running late"]
OPINION_CLAUSES = ["the library will open on Sundays", "the old mill is being restored",
                   "the bakery sells the best bread in town", "the river froze last winter",
                   "the bus fares are going up", "the new bridge is finished",
                   "the museum is free on Mondays", "the school is getting a new roof",
                   "the orchestra is touring again", "the park will close for repairs",
                   "the ferry no longer stops here", "the festival was cancelled"]
QUOTES = ["We should leave before it gets dark", "I have never seen so many stars",
          "The kettle has been boiling for ages", "Nobody told me the meeting was today",
          "Let me carry that for you", "I think we are lost", "The soup needs more salt",
          "You can borrow my coat if you like", "It is colder than I expected",
          "This road goes all the way to the coast", "I will be back in ten minutes",
          "We ran out of milk again", "That is the best news I have heard all week",
          "The garden looks wonderful this year", "I left my glasses on the train"]
QUOTE_QUESTIONS = ["Where are we going", "Have you seen my keys", "Is the shop still open",
                   "Who wants another cup of tea", "What time does the film start",
                   "Can you hear that noise", "Did anyone lock the door",
                   "Why is the kitchen so cold", "How far is the next village",
                   "Shall we take the long way home"]
SAID = ["said", "whispered", "replied", "called out", "admitted", "announced", "muttered", "explained"]
SHORT_FIXED = [
    "Come in, please.", "Nobody answered.", "It's raining again.", "Thank you very much.",
    "Good morning!", "Not yet.", "Wait for me!", "I agree.", "Close the door.", "Dinner is ready.",
    "Are you sure?", "Well done!", "See you tomorrow.", "Absolutely not.", "Try again.",
    "Who's there?", "Of course.", "Keep going!", "Stay here.", "That's enough.", "Time for bed.",
    "Sit down, please.", "What happened?", "Never mind.", "Listen carefully.", "Good night.",
    "Help yourself.", "Look out!", "I'm coming!", "It's late.", "How lovely!", "Why not?",
    "Be careful.", "Happy new year!", "Excuse me.", "Hold this, please.", "Where were you?",
    "The kettle's boiling.", "Perfectly fine.", "Right away!", "Let's go.", "Nice try.",
    "Everyone, listen!", "It worked!", "Pass the salt.", "Go to sleep.", "Not again!",
]
INTRANS_PAST = ["smiled", "laughed", "sighed", "nodded", "shrugged", "waved", "frowned", "yawned",
                "paused", "hesitated", "agreed", "disappeared", "apologised", "shivered", "blushed",
                "listened", "waited", "stumbled", "whistled", "coughed"]
ADVERBS = ["quietly", "slowly", "again", "politely", "suddenly", "nervously", "loudly", "briefly",
           "patiently", "happily"]
UNITS = [("tunnel", "kilometres", "long", 1, 60), ("tower", "metres", "tall", 20, 400),
         ("lake", "metres", "deep", 5, 300), ("valley", "miles", "wide", 2, 40),
         ("bridge", "metres", "long", 50, 3000)]
FALLING = ["rain", "snow", "storm", "hail", "thunder"]
SOMETIME = ["after dark", "on a Sunday", "in the winter", "late at night", "during a storm",
            "on a bank holiday", "in the rush hour", "early in the morning"]
LANDMARKS = ["post office", "church", "second set of traffic lights", "roundabout", "old oak tree",
             "petrol station", "fountain", "railway bridge"]
GERUNDS = ["heading home", "locking up", "going to bed", "leaving for work", "catching the bus",
           "starting dinner", "calling it a day", "opening the shop"]
PLANS = ["go for a long walk", "have a picnic by the lake", "visit the castle",
         "stay in and play cards", "clear out the garage", "drive to the coast",
         "paint the spare room", "take the children to the zoo", "go fishing at the reservoir"]


class Person:
    """A named subject plus the pronouns that agree with it."""

    def __init__(self, name: str, subj: str, obj: str, pos: str):
        self.name, self.subj, self.obj, self.pos = name, subj, obj, pos


def person(rng: random.Random) -> Person:
    if rng.random() < 0.5:
        return Person(rng.choice(WOMEN), "she", "her", "her")
    return Person(rng.choice(MEN), "he", "him", "his")


def titled(rng: random.Random) -> str:
    return f"{rng.choice(TITLES)} {rng.choice(SURNAMES)}"


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def activity(rng: random.Random, p: Person) -> str:
    return rng.choice(ACTIVITIES).format(pos=p.pos)


# ---------------------------------------------------------------- number formats
def quantity(rng: random.Random, high: int = 9_999_999, low: int = 2) -> str:
    """A log-uniform count in [low, high], written with thousands commas as people write it."""
    n = int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))
    return f"{n:,}"


def year(rng: random.Random) -> int:
    return rng.choice([rng.randint(1850, 1999), rng.randint(1900, 1999), rng.randint(2000, 2030)])


def date(rng: random.Random) -> str:
    return f"{rng.choice(MONTHS)} {rng.randint(1, 28)}, {year(rng)}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def money(rng: random.Random, low: int = 0, high: int = 2) -> str:
    """A dollar amount of size class low..high: 0 cents/small, 1 hundreds/thousands, 2 millions."""
    size = rng.randint(low, high)
    if size == 0:
        return f"${rng.randint(1, 99)}" if rng.random() < 0.4 else f"${rng.randint(0, 99)}.{rng.randint(1, 99):02d}"
    if size == 1:
        return f"${rng.randint(100, 9999):,}"
    return f"${rng.randint(2, 40)} million"


def clock(rng: random.Random) -> str:
    minute = rng.choice([0, 5, 10, 15, 20, 30, 45, 50, rng.randint(1, 59)])
    return f"{rng.randint(1, 12)}:{minute:02d}"


def decimal(rng: random.Random) -> str:
    return f"{rng.randint(0, 40)}.{rng.randint(1, 9)}"


# ---------------------------------------------------------------- sentence families
def s_daily(rng):
    p = person(rng)
    forms = [
        lambda: f"{p.name} {activity(rng, p)} {rng.choice(WHEN)}.",
        lambda: f"{cap(rng.choice(WHEN))}, {p.name} {activity(rng, p)}.",
        lambda: f"{p.name} {activity(rng, p)} and then {activity(rng, p)}.",
        lambda: f"{titled(rng)} {activity(rng, Person('', '', '', 'their'))} {rng.choice(WHEN)}.",
        lambda: f"While {p.name} was {rng.choice(PLACES)}, {p.subj} met {rng.choice(WOMEN + MEN)}.",
        lambda: f"{p.name} found a {rng.choice(OBJECTS)} {rng.choice(PLACES)}.",
    ]
    return rng.choice(forms)()


def s_quantity(rng):
    things, where, most = rng.choice(COUNTABLES)
    p = person(rng)
    thing, unit, dim, low, high = rng.choice(UNITS)
    forms = [
        lambda: f"The {where} has {quantity(rng, most)} {things}.",
        lambda: f"There were {quantity(rng, most)} {things} in the {where} {rng.choice(WHEN)}.",
        lambda: f"{p.name} counted {quantity(rng, most)} {things} in the {where}.",
        lambda: f"The town has a population of {quantity(rng, 2_000_000, 300)}.",
        lambda: f"The {thing} is {quantity(rng, high, low)} {unit} {dim}.",
        lambda: f"Our team planted {quantity(rng, 5000)} trees along the river.",
        lambda: f"More than {quantity(rng, 900000, 20)} people signed the petition.",
        lambda: f"The {where} needs another {rng.randint(2, 60)} {things} before {rng.choice(WEEKDAYS)}.",
        lambda: f"Only {rng.randint(2, 19)} of the {rng.randint(20, 90)} {things} were still there by evening.",
    ]
    return rng.choice(forms)()


def s_date(rng):
    p = person(rng)
    y1 = year(rng)
    forms = [
        lambda: f"The {rng.choice(EVENTS)} is planned for {date(rng)}.",
        lambda: f"{p.name} was born on {date(rng)}, in {rng.choice(CITIES)}.",
        lambda: f"The factory opened in {min(y1, 1960)} and closed in {min(y1, 1960) + rng.randint(3, 60)}.",
        lambda: f"On {rng.choice(WEEKDAYS)}, {rng.choice(MONTHS)} {ordinal(rng.randint(1, 31))}, "
                f"the {rng.choice(VENUES)} will be closed.",
        lambda: f"The letter was dated {date(rng)}.",
        lambda: f"In {y1}, the bridge was rebuilt after a flood.",
        lambda: f"We moved to {rng.choice(CITIES)} in the summer of {y1}.",
        lambda: f"The deadline is the {ordinal(rng.randint(1, 31))} of {rng.choice(MONTHS)}.",
        lambda: f"By {y1}, the village had its own railway station.",
    ]
    return rng.choice(forms)()


def s_money(rng):
    p = person(rng)
    forms = [
        lambda: f"{cap(rng.choice(ITEMS_PRICE))} cost {money(rng, 0, 1)}.",
        lambda: f"{p.name} paid {money(rng, 0, 1)} for {rng.choice(ITEMS_PRICE)}.",
        lambda: f"Tickets are ${rng.randint(5, 40)} for adults and ${rng.randint(1, 4)}.50 for children.",
        lambda: f"The repair bill came to {money(rng, 1, 1)}, which was more than we expected.",
        lambda: f"The school raised {money(rng, 1, 1)} for a new playground.",
        lambda: f"The new {rng.choice(BUILDINGS)} will cost about {money(rng, 2, 2)}.",
        lambda: f"A cup of coffee costs ${rng.randint(1, 5)}.{rng.choice([25, 50, 75, 95])} here.",
        lambda: f"Can you lend me {money(rng, 0, 0)} until {rng.choice(WEEKDAYS)}?",
        lambda: f"The price went up from ${rng.randint(2, 20)} to ${rng.randint(21, 60)} in one year.",
    ]
    return rng.choice(forms)()


def s_measure(rng):
    p = person(rng)
    forms = [
        lambda: f"Sales rose by {rng.randint(2, 60)}% in the {rng.choice(['first', 'second', 'third', 'fourth'])} quarter.",
        lambda: f"The {rng.choice(VEHICLES)} leaves at {clock(rng)} every morning.",
        lambda: f"The temperature dropped to {rng.randint(0, 9)} degrees overnight.",
        lambda: f"The parcel weighs {decimal(rng)} kilograms.",
        lambda: f"About {rng.randint(5, 95)}% of the students walk to school.",
        lambda: f"{p.name} ran {decimal(rng)} miles before breakfast.",
        lambda: f"The {rng.choice(EVENTS)} starts at {clock(rng)}, so please be on time.",
        lambda: f"Her office is on the {ordinal(rng.randint(2, 40))} floor.",
        lambda: f"{p.name} finished {ordinal(rng.randint(1, 99))} out of {rng.randint(100, 400)} runners.",
        lambda: "The recipe needs {} cups of {} and {} spoons of {}.".format(
            rng.randint(2, 6), *(lambda f: (f[0], rng.randint(1, 3), f[1]))(rng.sample(FOODS, 2))),
        lambda: f"The river rose {decimal(rng)} metres in {rng.randint(2, 48)} hours.",
        lambda: f"Room {rng.randint(100, 450)} is at the end of the corridor.",
    ]
    return rng.choice(forms)()


def s_question(rng):
    p = person(rng)
    things, where, _ = rng.choice(COUNTABLES)
    forms = [
        lambda: f"Did you remember to {rng.choice(TASKS)}?",
        lambda: f"Where did {p.name} leave the {rng.choice(OBJECTS)}?",
        lambda: f"Have you ever been to {rng.choice(CITIES)}?",
        lambda: f"Why is the {rng.choice(VENUES)} closed today?",
        lambda: f"How many {things} are there in the {where}?",
        lambda: f"Could you {rng.choice(TASKS)}, please?",
        lambda: f"What time does the {rng.choice(VENUES)} open on {rng.choice(WEEKDAYS)}?",
        lambda: f"Is it true that {rng.choice(OPINION_CLAUSES)}?",
        lambda: f"Who left the {rng.choice(OBJECTS)} in the {rng.choice(ROOMS)}?",
        lambda: f"Would you rather {rng.choice(PLANS)} or {rng.choice(PLANS)}?",
        lambda: f"When did {p.name} last {rng.choice(TASKS)}?",
        lambda: f"Has anyone seen my {rng.choice(OBJECTS)}?",
        lambda: f"Do you know why {rng.choice(REASONS)}?",
        lambda: f"Shall we {rng.choice(PLANS)} on {rng.choice(WEEKDAYS)}?",
        lambda: f"Which {rng.choice(VEHICLES)} goes to {rng.choice(CITIES)}?",
        lambda: f"Was {p.name} {rng.choice(PLACES)} {rng.choice(WHEN)}?",
    ]
    return rng.choice(forms)()


def s_exclaim(rng):
    p = person(rng)
    forms = [
        lambda: f"What a {rng.choice(ADJ_GOOD)} {rng.choice(NOUNS_GOOD)}!",
        lambda: f"What a {rng.choice(ADJ_BAD)} {rng.choice(NOUNS_BAD)}!",
        lambda: f"Watch out for the {rng.choice(['ice', 'wet paint', 'broken step', 'low ceiling', 'nettles', 'traffic'])}!",
        lambda: f"I can't believe {rng.choice(OPINION_CLAUSES)}!",
        lambda: f"Hurry up, the {rng.choice(VEHICLES)} is leaving!",
        lambda: f"{p.name}, come and look at this {rng.choice(ANIMALS)}!",
        lambda: f"Happy birthday, {p.name}!",
        lambda: f"Oh no, I forgot the {rng.choice(OBJECTS)}!",
        lambda: f"How {rng.choice(ADJ_GOOD)} it is to see you again!",
        lambda: f"Don't touch the {rng.choice(['oven', 'stove', 'iron', 'fence', 'cake'])}, it's still hot!",
        lambda: f"Congratulations on the new job, {p.name}!",
        lambda: f"That {rng.choice(NOUNS_GOOD)} was absolutely {rng.choice(ADJ_GOOD)}!",
    ]
    return rng.choice(forms)()


def s_short(rng):
    p = person(rng)
    forms = [
        lambda: rng.choice(SHORT_FIXED),
        lambda: f"{p.name} {rng.choice(INTRANS_PAST)}.",
        lambda: f"{p.name} {rng.choice(INTRANS_PAST)} {rng.choice(ADVERBS)}.",
        lambda: f"The {rng.choice(ANIMALS)} {rng.choice(['escaped', 'vanished', 'slept', 'returned'])}.",
        lambda: f"Thanks, {p.name}.",
        lambda: f"Call {titled(rng)}.",
        lambda: f"{rng.choice(WEEKDAYS)} suits me.",
    ]
    return rng.choice(forms)()


def s_quote(rng):
    p = person(rng)
    forms = [
        lambda: f"\"{rng.choice(QUOTES)},\" {rng.choice(SAID)} {p.name}.",
        lambda: f"{p.name} {rng.choice(SAID)}, \"{rng.choice(QUOTES)}.\"",
        lambda: f"\"{rng.choice(QUOTE_QUESTIONS)}?\" asked {p.name}.",
        lambda: f"{p.name} looked up and asked, \"{rng.choice(QUOTE_QUESTIONS)}?\"",
        lambda: f"\"{rng.choice(QUOTES)},\" {p.subj} {rng.choice(SAID)}, \"and I mean it.\"",
    ]
    return rng.choice(forms)()


def s_punct(rng):
    p = person(rng)
    a, b, c = rng.sample(OBJECTS, 3)
    forms = [
        lambda: f"We need three things: a {a}, a {b}, and a {c}.",
        lambda: f"The forecast was grim; still, {p.name} decided to {rng.choice(PLANS)}.",
        lambda: f"The museum (which opened in {year(rng)}) attracts visitors from all over the country.",
        lambda: f"{p.name} checked the {a}, the {b}, and the {c}; nothing was missing.",
        lambda: f"There is one rule in this house: always {rng.choice(TASKS)}.",
        lambda: f"First, {rng.choice(TASKS)}; then, {rng.choice(TASKS)}.",
        lambda: f"Bring the following: a {a}, a {b} and some sandwiches.",
        lambda: f"{titled(rng)} (our new neighbour) {activity(rng, Person('', '', '', 'their'))}.",
        lambda: f"It wasn't {p.name}'s fault; {rng.choice(REASONS)}.",
        lambda: f"Honestly, {p.name}, you're the only one who can {rng.choice(TASKS)}.",
    ]
    return rng.choice(forms)()


def s_nature(rng):
    noun, verb = rng.choice(WEATHER)
    forms = [
        lambda: f"The {noun} {verb} {rng.choice(WEATHER_WHEN)}.",
        lambda: f"{cap(rng.choice(WEATHER_WHEN))}, the {noun} {verb}.",
        lambda: f"A {rng.choice(ANIMALS)} was sleeping {rng.choice(NATURE_PLACES)}.",
        lambda: f"The children were playing {rng.choice(NATURE_PLACES)} when the {rng.choice(FALLING)} began.",
        lambda: f"The {rng.choice(ANIMALS)} watched us from the edge of the {rng.choice(['wood', 'field', 'lake', 'marsh', 'cliff'])}.",
        lambda: f"The leaves turned gold and red in {rng.choice(['September', 'October', 'November'])}.",
        lambda: f"By evening the {noun} had eased and the sky was clear.",
    ]
    return rng.choice(forms)()


def s_imperative(rng):
    forms = [
        lambda: f"Turn left at the {rng.choice(LANDMARKS)} and walk for {rng.randint(2, 20)} minutes.",
        lambda: f"Please {rng.choice(TASKS)} before you leave.",
        lambda: "Mix the {} with {} cups of {}.".format(
            *(lambda f: (f[0], rng.randint(2, 5), f[1]))(rng.sample(FOODS, 2))),
        lambda: f"Don't forget to {rng.choice(TASKS)}.",
        lambda: f"Take the {rng.choice(VEHICLES)} to {rng.choice(CITIES)} and change at the main station.",
        lambda: f"Put the {rng.choice(OBJECTS)} back in the {rng.choice(ROOMS)} when you're done.",
        lambda: f"Keep the receipt in case the {rng.choice(OBJECTS)} stops working.",
    ]
    return rng.choice(forms)()


def s_conditional(rng):
    noun, verb = rng.choice(WEATHER_IF)
    forms = [
        lambda: f"If the {noun} {verb} tomorrow, we will {rng.choice(PLANS)}.",
        lambda: f"Unless {rng.choice(UNLESS)}, the {rng.choice(EVENTS)} will go ahead as planned.",
        lambda: f"I think {rng.choice(OPINION_CLAUSES)}.",
        lambda: f"Apparently {rng.choice(OPINION_CLAUSES)}.",
        lambda: f"We were late because {rng.choice(REASONS)}.",
        lambda: f"Although {rng.choice(REASONS)}, the {rng.choice(EVENTS)} was a success.",
        lambda: f"If you see {titled(rng)}, tell them to {rng.choice(TASKS)}.",
    ]
    return rng.choice(forms)()


def s_long(rng):
    """Compound sentences of 25 words or more."""
    p, q = person(rng), person(rng)
    noun, verb = rng.choice(WEATHER)
    forms = [
        lambda: (f"{cap(rng.choice(WHEN))}, {p.name} {activity(rng, p)} {rng.choice(PLACES)}, and then "
                 f"{p.subj} {activity(rng, p)} before {rng.choice(GERUNDS)}, even though {rng.choice(REASONS)}."),
        lambda: (f"Although {rng.choice(REASONS)}, {p.name} and {q.name} decided to {rng.choice(PLANS)}, "
                 f"so they packed a {rng.choice(OBJECTS)} and a {rng.choice(OBJECTS)} and set off "
                 f"{rng.choice(WHEN)} without telling anyone where they were going."),
        lambda: (f"The {noun} {verb} {rng.choice(WHEN)}, and by the time {p.name} reached the "
                 f"{rng.choice(VENUES)}, the doors were locked, the lights were off, and nobody "
                 f"answered when {p.subj} knocked."),
        lambda: (f"When {titled(rng)} arrived {rng.choice(MEETING_PLACES)} on {date(rng)}, it turned out "
                 f"that {rng.choice(REASONS)}, so the whole group waited for almost {rng.randint(2, 5)} "
                 f"hours before anyone could {rng.choice(TASKS)}."),
        lambda: (f"{p.name} had always wanted to {rng.choice(PLANS)}, but {rng.choice(REASONS)}, and "
                 f"{p.subj} had to {rng.choice(TASKS)} instead, which was not nearly as much fun "
                 f"as {p.subj} had hoped."),
        lambda: (f"After the {rng.choice(EVENTS)} ended, {p.name} walked slowly back to the station, "
                 f"thinking about what {q.name} had said, and wondering whether {rng.choice(OPINION_CLAUSES)}."),
        lambda: (f"If you ever find yourself {rng.choice(PLACES)} {rng.choice(SOMETIME)}, remember to "
                 f"{rng.choice(TASKS)}, because last time {rng.choice(REASONS)}, and nobody "
                 f"wants that to happen again."),
        lambda: (f"The old {rng.choice(BUILDINGS)} in {rng.choice(CITIES)}, which was built in "
                 f"{rng.randint(1780, 1930)} and restored {rng.randint(20, 90)} years later, still has "
                 f"its original {rng.choice(FEATURES)} and welcomes more than {rng.randint(2, 90)},000 "
                 f"visitors every year, most of them in {rng.choice(MONTHS)}."),
    ]
    # Some forms are occasionally shorter than 25 words: retry until long enough.
    while True:
        s = rng.choice(forms)()
        if len(s.split()) >= 25:
            return s


FAMILIES = [  # (generator, weight)
    (s_daily, 12), (s_quantity, 8), (s_date, 7), (s_money, 7), (s_measure, 8), (s_question, 12),
    (s_exclaim, 7), (s_short, 8), (s_quote, 5), (s_punct, 6), (s_nature, 5), (s_imperative, 5),
    (s_conditional, 6), (s_long, 10),
]


def generate(n: int = N_SENTENCES, seed: int = SEED) -> list[str]:
    """Return `n` distinct sentences, identical for identical (n, seed)."""
    rng = random.Random(seed)
    gens, weights = zip(*FAMILIES)
    out, seen = [], set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise RuntimeError(f"could only make {len(out)} distinct sentences; add templates or vocabulary")
        s = rng.choices(gens, weights)[0](rng)
        key = s.lower()
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def make_lines(n: int = N_SENTENCES, seed: int = SEED) -> tuple[list[str], list[str]]:
    sentences = generate(n, seed)
    ids = [f"syn{i:04d}" for i in range(1, len(sentences) + 1)]
    lines = [f"{i}|{s}" for i, s in zip(ids, sentences)]
    test_ids = [i for k, i in enumerate(ids, start=1) if k % TEST_EVERY == 0]
    return lines, test_ids


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = Path(__file__).resolve().parent
    ap.add_argument("--out", default=str(here / "sentences.txt"))
    ap.add_argument("--test-out", default=str(here / "test_ids.txt"))
    ap.add_argument("-n", type=int, default=N_SENTENCES)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--check", action="store_true", help="compare with the existing files instead of writing")
    args = ap.parse_args(argv)
    lines, test_ids = make_lines(args.n, args.seed)
    text, test_text = "\n".join(lines) + "\n", "\n".join(test_ids) + "\n"
    if args.check:
        same = Path(args.out).read_text() == text and Path(args.test_out).read_text() == test_text
        print("up to date" if same else "DIFFERENT from the committed files")
        return 0 if same else 1
    Path(args.out).write_text(text)
    Path(args.test_out).write_text(test_text)
    print(f"wrote {len(lines)} sentences to {args.out} and {len(test_ids)} test ids to {args.test_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
