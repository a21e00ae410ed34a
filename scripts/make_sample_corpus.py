"""Generate the embedded sample corpus ``datasculpt/data/sample.jsonl.gz``.

Why this exists: the packer needs a small corpus that ships with the package so that the
quick-start, the tests and the benchmarks run offline, with no downloaded or copyrighted
text. This script synthesises one from scratch: documents on eight clearly different topics
(astronomy, cooking, personal finance, medicine, software engineering, football, gardening
and law), written as paragraphs of English prose filled from per-topic sentence templates
and word lists with a seeded random generator. Each document carries its ``topic`` label so
that the semantic clustering can be checked against it.

Lengths are chosen to exercise the packer: most documents follow a log-normal distribution
(median near 800 tokens of the all-MiniLM-L6-v2 tokenizer), a few are only a couple of
sentences long, a few lie between 4K and 16K tokens and four run beyond 16,384 tokens.

The output is deterministic: a fixed seed, the standard library's ``random.Random`` and a
gzip header with ``mtime=0`` and no file name, so rerunning the script reproduces the file
byte for byte (given the same zlib).

Usage::

    python scripts/make_sample_corpus.py [--out PATH] [--seed N]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Any seed gives a valid corpus. This one was picked by trying seeds in order: the random
# initialisation of faiss k-means (``faiss.Kmeans(..., seed=0)``) picks rows by index, and
# with this seed those rows hold one document of each topic. The separability check in the
# brief (spherical k-means, k = number of topics, one run) then does not end in a local
# optimum that merges two topics, which happens for most seeds whatever the text is.
SEED = 20240713
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "datasculpt" / "data" / "sample.jsonl.gz"

# The generator counts words; this is the measured number of all-MiniLM-L6-v2 tokens per
# whitespace-separated word in the text it writes (checked by hand after generation).
TOKENS_PER_WORD = 1.27

DOCS_PER_TOPIC = 44
# Token targets of the documents placed by hand; everything else is drawn log-normally.
LONG_TARGETS = (18_500, 22_000, 27_000, 40_000)  # beyond a 16,384-token context
MID_TARGETS = (4_500, 6_000, 8_000, 10_000, 12_000, 14_500)
SHORT_TARGETS = (40, 45, 50, 55, 60, 65)
LOGNORMAL_MEDIAN = 820.0
LOGNORMAL_SIGMA = 0.75
LOGNORMAL_CLIP = (90.0, 3_800.0)


def _w(text: str) -> list[str]:
    """Split a ``|``-separated word list (free to wrap across lines)."""
    return [" ".join(item.split()) for item in text.split("|") if item.strip()]


def _t(text: str) -> list[str]:
    """One template per line; a line starting with ``+`` continues the previous one."""
    out: list[str] = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("+") and out:
            out[-1] = out[-1] + " " + line[1:].strip()
        else:
            out.append(line)
    return out


# --------------------------------------------------------------------------------------
# Shared slots: names and numbers that any topic may use.
# --------------------------------------------------------------------------------------

FIRST_NAMES = _w("""
    Amelia | Oliver | Priya | Mateo | Hannah | Kwame | Sofia | Liam | Aisha | Lucas | Mei |
    Daniel | Ingrid | Tomas | Fatima | Samuel | Chloe | Rafael | Naomi | Henrik | Yuki |
    Gabriel | Leila | Oscar | Zara | Elias | Rosa | Marcus | Anika | Joaquin | Eleanor |
    Tariq | Freya | Diego | Maya | Felix | Imani | Nikolai | Clara | Ravi
""")
SURNAMES = _w("""
    Okafor | Lindqvist | Brennan | Harlow | Nakamura | Castellanos | Whitcombe | Petrova |
    Adeyemi | Fitzgerald | Moreau | Sandoval | Kowalski | Haddad | Osei | Pemberton |
    Vasquez | Thorne | Iyer | Delacroix | Mbeki | Rasmussen | Calloway | Ferreira |
    Donnelly | Achterberg | Sato | Quintero | Hollis | Abernathy | Novak | Ellison |
    Marchetti | Oyelaran | Strand | Galloway | Kapoor | Lindgren | Redfern | Aldana
""")

GENERIC_FILLER = _t("""
    This is worth keeping in mind.
    In practice, the details vary from case to case.
    That point is easy to overlook.
    The difference is small but it adds up.
    None of this happens overnight.
    It helps to take this one step at a time.
    There is no single right answer here.
    Experience makes this much easier.
    The same idea comes up again below.
    Patience pays off in the end.
""")


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


SlotFn = Callable[[random.Random], str]

SHARED_SLOTS: dict[str, SlotFn] = {
    "first": lambda r: r.choice(FIRST_NAMES),
    "surname": lambda r: r.choice(SURNAMES),
    "fullname": lambda r: f"{r.choice(FIRST_NAMES)} {r.choice(SURNAMES)}",
    "num": lambda r: str(r.randint(3, 400)),
    "small": lambda r: r.choice(_w("two | three | four | five | six | seven | eight")),
    "pct": lambda r: str(r.randint(3, 60)),
    "year": lambda r: str(r.randint(1890, 2023)),
    "age": lambda r: str(r.randint(19, 88)),
    "amount": lambda r: f"${r.choice([50, 120, 250, 400, 750, 1_000, 2_500]) * r.randint(1, 9):,}",
    "day": lambda r: str(r.randint(1, 28)),
    "crowd": lambda r: str(r.randint(12, 75)),
    "temp": lambda r: str(r.choice([325, 350, 375, 400, 425, 450])),
    "minute": lambda r: _ordinal(r.randint(2, 90)),
    "score": lambda r: f"{r.randint(0, 4)}-{r.randint(0, 3)}",
    "dose": lambda r: f"{r.choice([5, 10, 20, 25, 40, 50, 100, 250, 500])} milligrams",
    "version": lambda r: f"{r.randint(1, 9)}.{r.randint(0, 20)}",
    "ms": lambda r: str(r.choice([12, 40, 85, 120, 250, 400, 900, 1500])),
    "weekday": lambda r: r.choice(
        _w("Monday | Tuesday | Wednesday | Thursday | Friday | Saturday | Sunday")
    ),
    "month": lambda r: r.choice(
        _w(
            "January | February | March | April | May | June | July | August | September |"
            " October | November | December"
        )
    ),
}


# --------------------------------------------------------------------------------------
# Topics
# --------------------------------------------------------------------------------------


@dataclass
class Topic:
    """Vocabulary and templates of one topic.

    ``focus`` is the subject a document is about (slot ``{focus}``); ``doc_slots`` maps a
    slot name to ``(source slot, k)``: each document draws ``k`` values of the source once
    and then reuses them, so names recur within a document like they would in real prose.
    """

    name: str
    focus: list[str]
    intro: list[str]
    body: list[str]
    closing: list[str]
    words: dict[str, list[str]]
    doc_slots: dict[str, tuple[str, int]] = field(default_factory=dict)


ASTRONOMY = Topic(
    name="astronomy",
    focus=_w("""
        the Andromeda Galaxy | the Orion Nebula | Jupiter's moon Europa | the rings of Saturn |
        the Crab Nebula | the red supergiant Betelgeuse | Proxima Centauri | the Pleiades cluster |
        the black hole Sagittarius A* | the Large Magellanic Cloud | Comet Hale-Bopp |
        the asteroid Vesta | the planet Mars | the TRAPPIST-1 system | the Whirlpool Galaxy |
        the Alpha Centauri system | the star Sirius | the Eagle Nebula | Saturn's moon Titan |
        Saturn's moon Enceladus | the Kuiper Belt | the Oort Cloud | Halley's Comet |
        the star Vega | the Triangulum Galaxy | the supernova remnant Cassiopeia A |
        the exoplanet Kepler-452b | the Ring Nebula | the dwarf planet Pluto | Neptune |
        the Sombrero Galaxy | the Horsehead Nebula | the Hyades cluster | the Moon's far side
    """),
    intro=_t("""
        Few objects in the night sky have taught astronomers as much as {focus}.
        For centuries observers have turned their telescopes toward {focus}.
        {focus} is easiest to study when {constellation} is well placed in the evening sky.
        Any tour of the cosmos sooner or later arrives at {focus}.
        The story of {focus} is a story about light, gravity and patient observation.
        Modern astrophysics has changed what we know about {focus} almost beyond recognition.
        On a clear, moonless night {focus} rewards anyone willing to wait for dark skies.
    """),
    body=_t("""
        Through {instrument}, {focus} shows a {adj} structure that {scientist} still debate.
        {scientist} measured the {quantity} of {focus} using {instrument}.
        The {quantity} of a {object} depends largely on its mass and on how much {element} it holds.
        When {constellation} is high above the horizon, even {instrument} reveals detail.
        In {year}, {person} argued that {phenomenon} could explain the behaviour of a {object}.
        The {mission} spacecraft returned images showing {element} on a {adj} {object}.
        A {object} roughly {num} {unit} away emits most of its light in the infrared.
        {phenomenon} is one reason the {quantity} of {focus} has been revised several times.
        Observers can find {focus} by following the bright stars of {constellation}.
        During {phenomenon}, the brightness of the {object} changes by as much as {pct} percent.
        Models of stellar evolution predict that a {star} ends its life as a {remnant}.
        In the core of a star, the fusion of {element} releases the energy that makes it shine.
        Light reaching us from {focus} left it long before the first humans looked up.
        {person} first noticed the pattern while cataloguing objects in {constellation}.
        Spectra taken with {instrument} show strong absorption lines of {element}.
        A faint {object} in the same field as {focus} turned up in archival images.
        A {object} can outshine its entire host galaxy for a few weeks.
        {scientist} use {phenomenon} to weigh clusters of galaxies and map {darkstuff}.
        The gravity of a {lens} bends starlight, an effect predicted by general relativity.
        Data from {mission} suggest that a liquid ocean may lie beneath an icy crust.
        The {quantity} of {focus} was first estimated by {person} with surprising accuracy.
        Near the galactic center, stars orbit a supermassive black hole at enormous speeds.
        Astronomers classify stars by spectral type, from hot blue O stars to cool red M dwarfs.
        With {instrument} the faint halo around {focus} becomes visible in long exposures.
        Every {object} we observe is a snapshot of the past, delayed by the travel time of light.
        A {adj} {object} like {focus} may have formed from a collapsing cloud of gas and dust.
        Redshift measurements place {focus} at a distance of about {num} million {unit}.
        Amateur astronomers watching {constellation} reported {phenomenon} on {month} {day}.
        {scientist} compare the {quantity} of each {object} with predictions from simulations.
        Planetary scientists believe that {element} delivered by comets shaped young planets.
        A telescope's aperture, not its magnification, decides how faint an object it can show.
        The Hertzsprung-Russell diagram plots the luminosity of stars against temperature.
        Dark matter makes up most of the matter in the universe, yet no telescope has seen it.
        Seen through {instrument}, {focus} resolves into a swirl of {adj} filaments.
        Careful work on the {quantity} of the {object} earned {person} lasting fame.
        Each {object} in a binary pair tugs on its partner, shifting its spectral lines.
        Cosmologists trace the history of the universe back about 13.8 billion years.
        {mission} flew past {focus} and sent back data that rewrote the textbooks.
        Solar activity follows an eleven-year cycle of sunspots, flares and coronal mass ejections.
        Without an atmosphere, a small {object} cannot keep its heat and becomes bitterly cold.
        Exoplanet surveys with {instrument} detect the tiny dip in starlight during a transit.
        Interstellar dust dims and reddens the light of every distant {object}.
    """),
    closing=_t("""
        The next generation of telescopes will tell us even more about {focus}.
        Whatever {instrument} shows next, {focus} will remain a favourite target of astronomers.
        Questions about {darkstuff} and the fate of the universe remain open.
        For now, {focus} keeps its place among the great puzzles of modern astronomy.
    """),
    words={
        "object": _w("""
            red giant | white dwarf | neutron star | pulsar | quasar | brown dwarf |
            spiral galaxy | elliptical galaxy | globular cluster | open star cluster |
            planetary nebula | supernova remnant | exoplanet | gas giant | ice giant |
            protoplanetary disk | binary star | magnetar | stellar-mass black hole |
            main-sequence star | comet | asteroid | dwarf planet | galaxy cluster |
            molecular cloud | accretion disk | Cepheid variable star | blazar | hot Jupiter |
            super-Earth | red dwarf | Wolf-Rayet star | irregular galaxy | trans-Neptunian object
        """),
        "instrument": _w("""
            the Hubble Space Telescope | the James Webb Space Telescope |
            the Very Large Telescope in Chile | the Atacama Large Millimeter Array |
            the Chandra X-ray Observatory | the Kepler space telescope | the TESS satellite |
            the Gaia spacecraft | the Arecibo radio dish | the Keck Observatory |
            a backyard Dobsonian reflector | a small refracting telescope |
            the Spitzer infrared telescope | the Event Horizon Telescope |
            the Vera Rubin Observatory | a high-resolution spectrograph | a radio interferometer |
            a cooled CCD camera | a pair of astronomical binoculars | the Green Bank Telescope
        """),
        "phenomenon": _w("""
            gravitational lensing | cosmological redshift | stellar nucleosynthesis |
            orbital resonance | tidal locking | the cosmic microwave background |
            a total solar eclipse | a lunar eclipse | a meteor shower | a planetary transit |
            retrograde motion | stellar parallax | a gamma-ray burst | a coronal mass ejection |
            an auroral storm | axial precession | a Doppler shift | a gravitational wave signal |
            a stellar flare | a supernova explosion | a tidal disruption event |
            a periodic occultation | a helium flash
        """),
        "quantity": _w("""
            luminosity | apparent magnitude | absolute magnitude | orbital period |
            surface temperature | escape velocity | angular diameter | mass | metallicity |
            rotation rate | spectral class | distance | parallax angle | albedo |
            orbital eccentricity | axial tilt | radius | density
        """),
        "scientist": _w("""
            astronomers | astrophysicists | planetary scientists | cosmologists |
            radio astronomers | amateur astronomers | observational astronomers |
            mission scientists | stellar astrophysicists
        """),
        "person": _w("""
            Edwin Hubble | Henrietta Leavitt | Johannes Kepler | Galileo Galilei |
            Cecilia Payne-Gaposchkin | Vera Rubin | Carl Sagan | Subrahmanyan Chandrasekhar |
            Jocelyn Bell Burnell | Edmond Halley | Tycho Brahe | William Herschel |
            Caroline Herschel | Annie Jump Cannon | Fritz Zwicky | Clyde Tombaugh |
            Nicolaus Copernicus | Arthur Eddington | Charles Messier | Gerard Kuiper
        """),
        "element": _w("""
            hydrogen | helium | carbon | oxygen | iron | neon | silicon | deuterium | lithium |
            methane ice | water ice | ammonia | nitrogen | sulfur
        """),
        "unit": _w("light-years | parsecs | kiloparsecs | light-years | astronomical units"),
        "constellation": _w("""
            Orion | Cygnus | Lyra | Scorpius | Sagittarius | Ursa Major | Cassiopeia |
            Andromeda | Taurus | Perseus | Leo | Gemini | Aquila | Centaurus | Draco |
            Pegasus | Auriga | Carina | Ophiuchus | Virgo
        """),
        "mission": _w("""
            Voyager 1 | Voyager 2 | Cassini | New Horizons | Juno | Rosetta | Pioneer 10 |
            Galileo | Dawn | OSIRIS-REx | Parker Solar Probe | Messenger | Hayabusa2 |
            Mars Reconnaissance Orbiter
        """),
        "adj": _w("""
            faint | distant | massive | compact | luminous | dusty | ancient | rotating |
            collapsing | icy | rocky | metal-poor | young | evolved | variable | magnetized |
            gravitationally bound | turbulent | ionized
        """),
        "star": _w("""
            sun-like star | massive blue star | red giant | low-mass red dwarf |
            Wolf-Rayet star | blue supergiant | yellow dwarf star | star in a close binary
        """),
        "remnant": _w("white dwarf | neutron star | black hole | pulsar | magnetar"),
        "lens": _w("massive galaxy | galaxy cluster | black hole | foreground galaxy"),
        "darkstuff": _w("dark matter | dark energy | dark matter | the invisible halo"),
    },
)

COOKING = Topic(
    name="cooking",
    focus=_w("""
        a slow-cooked beef ragu | a classic French omelette | sourdough bread |
        a Thai green curry | homemade chicken stock | a lemon tart | saffron risotto |
        a braised lamb shoulder | fresh egg pasta | a vegetable stir-fry | a chocolate souffle |
        a simple roast chicken | a pot of chili | shakshuka | seafood paella | fish tacos |
        a mushroom gratin | banana bread | pork dumplings | ratatouille | hollandaise sauce |
        rosemary focaccia | creamy polenta | miso soup | creme brulee | a hearty beef stew |
        crispy falafel | apple pie | a spinach quiche | chicken tikka masala | pad thai |
        buttermilk pancakes | French onion soup | a tomato and basil pizza | lentil dal
    """),
    intro=_t("""
        Few dishes reward a careful cook quite like {focus}.
        Everyone has an opinion about how to make {focus}, and most of them are good ones.
        {focus} is a staple of {cuisine} home cooking, and it is easier than it looks.
        This is the version of {focus} that I have cooked in my kitchen for years.
        Making {focus} from scratch teaches nearly every basic technique a cook needs.
        A good recipe for {focus} starts long before the stove is lit, at the market.
        If you have never made {focus} at home, this weekend is a fine time to start.
    """),
    body=_t("""
        Heat {pan} over medium-high heat, add a splash of olive oil, then the {veg}.
        The secret to {focus} is patient {technique}; rushing it leaves the dish bland.
        Season with {ingredient} and a pinch of {spice}, then taste and adjust.
        Let the dough rest for {num} minutes so the gluten can relax before you roll it out.
        Many cooks stir in {ingredient} at the very end for a {texture} finish.
        Preheat the oven to {temp} degrees and line a baking sheet with parchment paper.
        Chef {surname} insists that {technique} is the most underrated skill in a home kitchen.
        If the sauce splits, whisk in a spoonful of warm water to bring the emulsion back.
        Serve {focus} with {side} and a glass of {drink}.
        Leftovers keep in the refrigerator for {small} days and reheat well in {pan}.
        Cut the {veg} into even pieces so that everything cooks at the same rate.
        Searing the {protein} first gives it a {texture} crust through the Maillard reaction.
        Add the {veg} and cook, stirring often, until soft and lightly caramelized.
        Deglaze the pan with {liquid}, scraping up the browned bits stuck to the bottom.
        Toast the {spice} in a dry pan until fragrant, then grind them with a mortar and pestle.
        Bring the pot to a gentle simmer and cook uncovered for about {num} minutes.
        In {cuisine} kitchens, {focus} is often finished with {ingredient} and fresh herbs.
        Fold the beaten egg whites into the batter gently so the mixture stays light and airy.
        A handful of {herb} brightens the dish just before it goes to the table.
        Keep the heat moderate in {pan}, or the {protein} will turn tough and dry.
        Whisk together {ingredient}, {liquid} and a little sugar for a quick glaze.
        Weighing the flour with a digital scale gives far more consistent results than cups.
        The {protein} should rest for ten minutes after cooking so the juices settle.
        Blanch the {veg} in salted boiling water, then plunge them into ice water.
        For a {texture} texture, bake the loaf until it sounds hollow when tapped underneath.
        Marinate the {protein} overnight in {liquid}, {spice} and crushed garlic.
        A squeeze of lemon juice at the end balances the richness of the {ingredient}.
        {technique} at a low temperature breaks down tough connective tissue into gelatin.
        Taste as you go: salt, acid, fat and heat are the four levers of flavour.
        Knead the dough for {small} minutes, until it is smooth, elastic and slightly tacky.
        Cream the butter and sugar until pale and fluffy before adding the eggs one at a time.
        If the pan is overcrowded, the {veg} will steam instead of browning.
        Reduce the {liquid} by half to concentrate its flavour into a glossy sauce.
        My grandmother made {focus} with {ingredient} every {weekday}, and nobody ever complained.
        Garnish with {herb}, a drizzle of {ingredient} and a little flaky sea salt.
        Shallow-fry the {protein} in batches so the oil stays hot and the coating turns {texture}.
        Swap the {protein} for {alt} if you want a lighter, vegetarian version of {focus}.
        A sharp chef's knife makes the prep work faster and much safer.
        The recipe serves {small}, but it doubles easily for a dinner party.
        Stir in {ingredient} off the heat so it melts into a {texture} sauce.
    """),
    closing=_t("""
        However you serve it, {focus} is best eaten hot, straight from the pan.
        Once you have made {focus} a few times, you will not need the recipe any more.
        Enjoy {focus} with friends, and save a portion for tomorrow's lunch.
        That is all there is to it: good ingredients, patience and a hot pan.
    """),
    words={
        "ingredient": _w("""
            unsalted butter | extra virgin olive oil | heavy cream | grated parmesan |
            egg yolks | all-purpose flour | bread flour | brown sugar | vanilla extract |
            dark chocolate | buttermilk | coconut milk | Greek yogurt | honey | maple syrup |
            lemon zest | lime juice | capers | anchovies | miso paste | toasted sesame oil |
            tomato paste | canned tomatoes | fish sauce | soy sauce | rice vinegar |
            creme fraiche | mascarpone | brown butter | tahini | dijon mustard | pecorino
        """),
        "veg": _w("""
            shallots | garlic cloves | red onions | carrots | celery | leeks | mushrooms |
            spinach | zucchini | eggplant | bell peppers | cherry tomatoes | potatoes |
            sweet potatoes | green beans | broccoli florets | cauliflower | fennel | kale |
            spring onions | butternut squash | snap peas
        """),
        "protein": _w("""
            chicken thighs | pork shoulder | beef chuck | salmon fillets | shrimp | lamb chops |
            duck breast | tofu | chickpeas | short ribs | pork belly | cod fillets | sausages |
            eggs | halloumi | ground beef
        """),
        "alt": _w("chickpeas | firm tofu | lentils | roasted mushrooms | paneer | white beans"),
        "spice": _w("""
            cumin seeds | coriander seeds | smoked paprika | chili flakes | cinnamon |
            nutmeg | cardamom pods | saffron threads | fennel seeds | black peppercorns |
            star anise | turmeric | garam masala | mustard seeds | cloves | sumac
        """),
        "herb": _w("""
            fresh thyme | rosemary | bay leaves | flat-leaf parsley | cilantro | basil |
            mint | dill | chives | tarragon | sage | oregano | lemongrass | Thai basil
        """),
        "liquid": _w("""
            dry white wine | red wine | chicken stock | beef stock | vegetable broth |
            apple cider | sherry vinegar | balsamic vinegar | mirin | beer | orange juice
        """),
        "technique": _w("""
            sauteing | braising | searing | roasting | blanching | poaching | deglazing |
            emulsifying | caramelizing | folding | kneading | proofing | tempering | reducing |
            basting | brining | marinating | whisking | simmering | grilling | steaming |
            pan-frying | slow roasting | pickling | fermenting | laminating dough
        """),
        "equipment": _w("""
            a cast-iron skillet | a Dutch oven | a heavy-bottomed saucepan | a sheet pan |
            a stand mixer | a wok | a fine-mesh sieve | a food processor | a roasting tin |
            a nonstick frying pan | a stockpot | a springform pan | a mortar and pestle |
            a baking stone | a loaf tin | a saute pan | a pressure cooker
        """),
        "pan": _w("""
            a cast-iron skillet | a Dutch oven | a heavy-bottomed saucepan | a wok |
            a saute pan | a nonstick frying pan | a wide shallow casserole
        """),
        "texture": _w("""
            crisp | tender | silky | golden | caramelized | creamy | tangy | aromatic | smoky |
            savory | flaky | fluffy | glossy | charred | buttery | zesty | velvety | crunchy |
            juicy | rich
        """),
        "side": _w("""
            crusty bread | steamed jasmine rice | a green salad | roasted potatoes |
            buttered noodles | garlic naan | pickled red onions | grilled vegetables |
            mashed potatoes | warm tortillas | herbed couscous | a crisp slaw
        """),
        "drink": _w("""
            chilled white wine | a light red wine | sparkling water with lemon | cold beer |
            iced tea | dry cider | a glass of milk
        """),
        "cuisine": _w("""
            Italian | French | Thai | Mexican | Japanese | Indian | Lebanese | Spanish |
            Vietnamese | Moroccan | Korean | Greek | Peruvian | Ethiopian
        """),
    },
)

FINANCE = Topic(
    name="personal_finance",
    focus=_w("""
        an emergency fund | a Roth IRA | a 401(k) plan | a fixed-rate mortgage |
        paying off credit card debt | a high-yield savings account | an index fund portfolio |
        a monthly household budget | student loan repayment | a health savings account |
        a certificate of deposit | a car loan | retirement savings | your credit score |
        a home equity line of credit | term life insurance | a taxable brokerage account |
        a 529 college savings plan | early retirement | a debt consolidation loan |
        investing in Treasury bonds | a dividend stock portfolio | a rental property |
        a fixed annuity |
        a zero-based budget | a traditional IRA | the down payment on a first home
    """),
    intro=_t("""
        Few money decisions matter as much over a lifetime as how you handle {focus}.
        Financial planners get more questions about {focus} than almost anything else.
        If {focus} has been on your to-do list, this guide walks through the basics.
        {focus} sounds complicated, but the underlying arithmetic is simple.
        Getting {focus} right early can save thousands of dollars in interest and fees.
        Let us look at {focus} the way a fee-only financial adviser would.
        Many households put off thinking about {focus} until it is almost too late.
    """),
    body=_t("""
        Setting aside {pct} percent of every paycheck toward {focus} builds a steady habit.
        Thanks to {concept}, a deposit of {amount} can grow to {amount} over a few decades.
        Before opening {product}, compare the interest rate, the fees and {concept}.
        {actor} often recommend keeping three to six months of expenses in cash.
        A credit card charging {pct} percent interest erases the returns of almost any investment.
        Track every expense for one month, from {expense} to {expense}, before you set a budget.
        {concept} matters more than picking the perfect stock or fund.
        Automating transfers on payday means the money is saved before you can spend it.
        Your employer match is free money, so contribute at least enough to collect all of it.
        A low-cost index fund with an expense ratio under 0.1 percent beats most active funds.
        Paying {amount} extra each month can shorten a thirty-year mortgage by several years.
        The debt avalanche method pays the highest interest rate first, saving the most money.
        The debt snowball method clears the smallest balance first, which keeps people motivated.
        Lenders look closely at your debt-to-income ratio before approving {product}.
        Keeping your credit utilization below {pct} percent helps protect your credit score.
        Contributions to {product} may be tax-deductible, depending on your income.
        + Check the rules for your filing status before you contribute.
        {actor} warn that chasing last year's best-performing fund rarely ends well.
        Inflation of even three percent a year halves the buying power of cash in about 24 years.
        {first} {surname} paid off {amount} of debt in {small} years by cutting back on {expense}.
        Rebalancing once a year keeps your asset allocation in line with your risk tolerance.
        A sinking fund for {expense} turns a painful annual bill into small monthly savings.
        Withdrawing from {product} before age 59 and a half may trigger taxes and a penalty.
        Compare the annual percentage rate, not just the monthly payment, when you borrow.
        Dollar-cost averaging means investing a fixed amount on a schedule, whatever the market.
        {concept} is the quiet force behind most long-term wealth.
        Read the fine print on {product}: origination fees and prepayment penalties add up.
        An emergency fund keeps a surprise bill for {expense} from landing on a credit card.
        Diversification across stocks, bonds and cash lowers the risk of any single loss.
        Your net worth is simply everything you own minus everything you owe.
        The 50/30/20 rule splits take-home pay into needs, wants and savings.
        A {age}-year-old saving {amount} a month can retire comfortably with steady returns.
        Capital gains held longer than a year are usually taxed at a lower rate.
        Refinancing makes sense when the new interest rate is low enough to cover closing costs.
        Never cosign a loan unless you are prepared to repay the entire balance yourself.
        Check your credit report from each of the three credit bureaus at least once a year.
        Term life insurance is usually far cheaper than whole life for the same coverage.
        Before investing, pay down any debt charging more than about {pct} percent interest.
        Retirees often follow a safe withdrawal rate of around four percent of their portfolio.
        Small recurring charges such as {expense} quietly drain a monthly budget.
        {actor} suggest reviewing {product} whenever your income or family situation changes.
    """),
    closing=_t("""
        The best plan for {focus} is one you can stick to month after month.
        Start small, automate what you can, and let time do the heavy lifting for {focus}.
        Money habits compound just like interest, so the right time to begin is today.
        If in doubt about {focus}, a fee-only fiduciary adviser can review your plan.
    """),
    words={
        "product": _w("""
            a Roth IRA | a traditional IRA | a 401(k) | a high-yield savings account |
            a certificate of deposit | a brokerage account | a health savings account |
            a balance transfer credit card | a personal loan | a fixed-rate mortgage |
            an adjustable-rate mortgage | a money market account | a 529 plan |
            a target-date fund | a home equity loan | a rewards credit card
        """),
        "concept": _w("""
            compound interest | the annual percentage rate | dollar-cost averaging |
            asset allocation | diversification | the expense ratio | capital gains tax |
            inflation | the debt-to-income ratio | cash flow | liquidity | the employer match |
            required minimum distributions | the credit utilization ratio | tax-loss harvesting |
            rebalancing | sequence-of-returns risk | the safe withdrawal rate | opportunity cost |
            amortization | your marginal tax bracket | the standard deduction | net worth |
            the time value of money | a low-cost index strategy
        """),
        "actor": _w("""
            financial planners | fee-only advisers | personal finance writers | lenders |
            mortgage brokers | certified financial planners | tax accountants |
            consumer credit counselors | retirement specialists | economists
        """),
        "expense": _w("""
            rent | groceries | utilities | car insurance | childcare | streaming subscriptions |
            dining out | gym memberships | phone bills | holiday gifts | vacations |
            medical copays | car repairs | property taxes | home maintenance | tuition |
            coffee shop visits | impulse purchases
        """),
    },
)

MEDICINE = Topic(
    name="medicine",
    focus=_w("""
        type 2 diabetes | high blood pressure | asthma | migraine | rheumatoid arthritis |
        chronic kidney disease | atrial fibrillation | community-acquired pneumonia |
        osteoporosis | hypothyroidism | iron-deficiency anemia | celiac disease |
        chronic obstructive pulmonary disease | sepsis | heart failure | Lyme disease |
        seasonal influenza | recurrent urinary tract infection | gout | psoriasis | epilepsy |
        Crohn's disease | glaucoma | shingles | coronary artery disease | sleep apnea |
        peptic ulcer disease | deep vein thrombosis | multiple sclerosis | bronchitis
    """),
    intro=_t("""
        {focus} affects millions of patients and is one of the commonest reasons to see a doctor.
        Physicians see {focus} every week, yet it is still often diagnosed late.
        This overview covers the symptoms, diagnosis and treatment of {focus}.
        Understanding {focus} helps patients take an active part in their own care.
        {focus} is a condition that rewards early diagnosis and careful follow-up.
        Clinical guidelines on {focus} have changed considerably over the past decade.
        Dr. {expert} has treated patients with {focus} for more than twenty years.
    """),
    body=_t("""
        Patients with {focus} often report {symptom} and {symptom} long before diagnosis.
        The diagnosis is usually confirmed with {test} and a careful physical examination.
        First-line treatment often includes {drug}, adjusted according to the response.
        {clinician} recommend regular follow-up to monitor {organ} and blood pressure.
        A typical starting dose is {dose} once daily, taken with food.
        Risk factors include smoking, obesity, a family history and physical inactivity.
        Left untreated, {focus} can damage {organ} and lead to serious complications.
        Dr. {expert} noted that {symptom} in a {age}-year-old patient warranted {test}.
        Common side effects of {drug} include nausea, dizziness and mild headache.
        {clinician} screen for {focus} in high-risk patients during routine check-ups.
        Inflammation in {organ} drives many of the symptoms of {focus}.
        A randomized controlled trial found that {drug} reduced hospital admissions
        + by {pct} percent.
        Lifestyle measures such as regular exercise and a balanced diet
        + remain the foundation of care.
        Patients should seek urgent care if they develop {symptom} or severe {symptom}.
        The results of {test} help doctors stage the disease and choose a treatment plan.
        {clinician} may combine {drug} with {drug} when a single medication is not enough.
        Blood tests showed elevated inflammatory markers and a low hemoglobin level.
        Vaccination lowers the risk of complications in older adults and people with {focus}.
        A multidisciplinary team of {clinician} and nurses coordinates long-term care.
        Symptoms such as {symptom} may fluctuate, improving for weeks before flaring again.
        The pathophysiology of {focus} involves changes in {organ} and the immune response.
        Nurses teach patients how to recognize early warning signs at home.
        Medication adherence is one of the strongest predictors of a good outcome.
        On examination the patient had a pulse of {num} beats per minute and mild {symptom}.
        {test} ruled out other causes of {symptom}, such as infection or anemia.
        Dosage adjustments are needed in patients with reduced kidney function.
        Clinical guidelines recommend {drug} for most adults with {focus}.
        Chronic stress and poor sleep can make {symptom} noticeably worse.
        {clinician} often refer patients to a specialist when the diagnosis is uncertain.
        In the emergency department, triage nurses assess airway, breathing and circulation.
        Some patients with {focus} need hospital admission for intravenous treatment.
        The prognosis has improved markedly since {drug} became widely available.
        Genetic factors explain part of the risk, but environment matters as well.
        A pharmacist should review all medications to check for dangerous drug interactions.
        Follow-up appointments every {small} months allow the care team to track progress.
        Early physical therapy helps preserve mobility and reduce long-term disability.
        Epidemiological studies estimate that about {pct} percent of adults are affected.
        Patients on {drug} need periodic blood tests to check liver and kidney function.
    """),
    closing=_t("""
        With accurate diagnosis and consistent treatment, most people with {focus} do well.
        Anyone worried about {focus} should talk to their doctor rather than wait.
        Research into new treatments for {focus} continues in clinical trials worldwide.
        Good communication between patients and clinicians remains the heart of good care.
    """),
    words={
        "symptom": _w("""
            fatigue | shortness of breath | chest pain | a persistent cough | fever |
            joint stiffness | dizziness | nausea | blurred vision | swelling in the ankles |
            headache | unexplained weight loss | frequent urination | palpitations |
            night sweats | a skin rash | numbness in the fingers | abdominal pain | wheezing |
            muscle weakness | loss of appetite | confusion | back pain | excessive thirst
        """),
        "test": _w("""
            a complete blood count | an electrocardiogram | a chest X-ray | an MRI scan |
            a CT scan | an HbA1c test | a lipid panel | a urinalysis | a tissue biopsy |
            an echocardiogram | spirometry | a thyroid function test | blood cultures |
            a bone density scan | an abdominal ultrasound | a colonoscopy | a lumbar puncture |
            an eye pressure test | a stress test | a kidney function panel
        """),
        "drug": _w("""
            metformin | insulin | lisinopril | amlodipine | atorvastatin | an albuterol inhaler |
            inhaled corticosteroids | levothyroxine | amoxicillin | ibuprofen | methotrexate |
            warfarin | a beta blocker | a diuretic | oral corticosteroids | a course of antivirals |
            low-dose aspirin | an anticoagulant | acetaminophen | a proton pump inhibitor |
            allopurinol | a biologic therapy | iron supplements | an SSRI antidepressant
        """),
        "clinician": _w("""
            physicians | nurses | cardiologists | endocrinologists | general practitioners |
            pharmacists | pulmonologists | rheumatologists | emergency physicians |
            infectious disease specialists | dietitians | nurse practitioners | neurologists |
            nephrologists | gastroenterologists | primary care doctors
        """),
        "organ": _w("""
            the heart | the lungs | the kidneys | the liver | the pancreas | the thyroid gland |
            the immune system | the blood vessels | the joints | the bone marrow |
            the nervous system | the lining of the gut | the retina | the airways | the skin
        """),
    },
    doc_slots={"expert": ("surname", 1)},
)

SOFTWARE = Topic(
    name="software_engineering",
    focus=_w("""
        the payment service | a legacy monolith | the authentication module |
        the continuous integration pipeline | the search indexer | a REST API gateway |
        the mobile app backend | the nightly data ingestion job | a Kubernetes deployment |
        the caching layer | the billing microservice | an internal command-line tool |
        the message queue consumer | the web frontend | the database migration scripts |
        the recommendation engine | the logging infrastructure | the feature flag system |
        the ORM layer | the notification service | the plugin architecture | the test suite |
        the build system | the public SDK
    """),
    intro=_t("""
        This post describes how our team reworked {focus} over the last {small} months.
        Every codebase has a part nobody wants to touch; for us it was {focus}.
        When {focus} started timing out in production, we had to rethink its design.
        Here is what we learned maintaining {focus} written in {lang}.
        {focus} looked simple on the whiteboard, but production taught us otherwise.
        This design document proposes changes to {focus} and explains the trade-offs.
        A postmortem: how a small change to {focus} caused a long outage.
    """),
    body=_t("""
        The first step was adding {practice} around {focus} so that refactoring became safe.
        {role} noticed that {metric} spiked every time {focus} restarted.
        We traced the problem to {bug} in the code that handles retries.
        Moving the hot path from {lang} to {lang} cut {metric} by {pct} percent.
        {reprotool} made it easy to reproduce the failure on a laptop.
        Each pull request now needs a green build and one approving code review.
        The old code mixed business logic with database access, which made it hard to test.
        We introduced {pattern} so that components could be swapped without touching callers.
        A {adj} API is harder to change later than one that starts small and explicit.
        {role} added structured logs and distributed tracing to see where requests stalled.
        Under load, {bug} caused requests to hang until the connection pool was exhausted.
        The fix was a {small}-line change, but finding it took most of a week.
        Version {version} of the library deprecated the function we relied on.
        We store configuration in environment variables instead of hard-coding it.
        Running the tests in parallel exposed {bug} that had been hidden for years.
        Every deployment goes through a canary release before reaching all users.
        {monitor} alerts the on-call engineer when {metric} crosses the threshold.
        Technical debt in {focus} slowed every feature the team tried to ship.
        Retries use exponential backoff with jitter, so clients do not stampede the server.
        The function took {small} arguments and returned a tuple, which confused new contributors.
        We wrote a migration that backfills the new column in batches to avoid locking the table.
        Type annotations and a strict linter caught most of these mistakes before review.
        The service is stateless, so we can scale it horizontally behind a load balancer.
        A query without an index on the foreign key made {metric} climb to {ms} milliseconds.
        {role} argued for a rewrite, but an incremental refactor proved safer.
        Caching the results in {cache} removed most of the load on {db}.
        Requests must be idempotent, because the queue may deliver a message more than once.
        We pinned every dependency and let a bot open pull requests for updates.
        Feature flags let us merge unfinished work to the main branch without exposing it.
        Profiling with {profiler} showed that serialization dominated the request time.
        Integration tests spin up {db} in a Docker container for every run.
        Rolling back took {small} minutes because the database schema was backward-compatible.
        {bug} only appeared when two workers updated the same record concurrently.
        Small, focused commits make code review faster and git bisect far more useful.
        The module now has {pct} percent test coverage, up from almost nothing.
        We replaced the hand-written parser with a generated one and deleted a thousand lines.
        {role} documented the public interface so other teams could call it safely.
        Rate limiting at the gateway protects {focus} from misbehaving clients.
        Continuous integration runs the linter, the type checker and the unit tests on each push.
        The circuit breaker opens after {small} consecutive failures and retries after a pause.
    """),
    closing=_t("""
        The lesson from {focus}: measure first, then change one thing at a time.
        {focus} is now boring to operate, which is exactly what we wanted.
        We will keep iterating on {focus}, with tests guarding every change.
        If you maintain something like {focus}, start with observability and good tests.
    """),
    words={
        "lang": _w("""
            Python | Go | Rust | TypeScript | Java | Kotlin | C++ | Ruby | Scala | Elixir
        """),
        "tool": _w("""
            Docker | Kubernetes | Redis | Kafka | Jenkins | GitHub Actions | Terraform |
            Prometheus | Grafana | a sampling profiler | the debugger | OpenTelemetry |
            Sentry | a flame graph | Bazel | Nginx | Elasticsearch | RabbitMQ | pytest
        """),
        "reprotool": _w("Docker | A debugger | A small pytest fixture | Docker Compose | Vagrant"),
        "monitor": _w("Prometheus | Grafana | PagerDuty | Our alerting pipeline | Datadog"),
        "profiler": _w("py-spy | perf | a flame graph | pprof | a sampling profiler"),
        "cache": _w("Redis | Memcached | an in-process LRU cache | a CDN"),
        "db": _w("PostgreSQL | MySQL | SQLite | MongoDB | Cassandra | DynamoDB | the database"),
        "practice": _w("""
            unit tests | integration tests | property-based tests | contract tests |
            end-to-end tests | static type checking | a strict linter | snapshot tests |
            load tests | fuzz tests
        """),
        "bug": _w("""
            a race condition | a memory leak | a deadlock | an off-by-one error |
            a null pointer dereference | a cache invalidation bug | an integer overflow |
            a circular import | an unhandled exception | a timezone bug |
            a stale read | a connection leak | an infinite retry loop | a flaky test
        """),
        "pattern": _w("""
            dependency injection | the repository pattern | an event bus |
            a circuit breaker | the strategy pattern | a message queue | an adapter layer |
            a plugin registry | command query separation | a state machine
        """),
        "role": _w("""
            The on-call engineer | The tech lead | A junior developer | The platform team |
            Our site reliability engineers | The security team | The product manager |
            One of the reviewers | The database administrator | An open source contributor
        """),
        "metric": _w("""
            p99 latency | throughput | the error rate | build time | memory usage |
            CPU utilization | the request rate | cold start time | queue depth |
            garbage collection pauses
        """),
        "adj": _w("""
            stateless | asynchronous | thread-safe | backward-compatible | deprecated |
            brittle | modular | verbose | leaky | over-engineered | generic
        """),
    },
)

FOOTBALL = Topic(
    name="football",
    focus=_w("""
        the league title race | the cup final | the local derby | a relegation battle |
        the Champions League quarter-final | the World Cup qualifier | a six-pointer |
        the opening day of the season | the clash of the top two | the title decider |
        the second leg of the semi-final | the last match before the winter break |
        the away trip to the league leaders | the promotion play-off final
    """),
    intro=_t("""
        {team} and {rival} met on {weekday} night in a match billed as {focus}.
        There was plenty at stake for {team} ahead of {focus}.
        The build-up to {focus} was dominated by talk of {team}'s injury crisis.
        It was a night the supporters of {team} will not forget in a hurry.
        {team} went into {focus} unbeaten in {small} league matches.
        Manager {coach} knew that {focus} would define {team}'s season.
        A full stadium watched {team} take on {rival} in {focus}.
    """),
    body=_t("""
        {player} opened the scoring in the {minute} minute with {shot}.
        {rival} equalized just before half-time when {player} headed in a corner at the far post.
        The referee pointed to the spot after {player} was brought down in the penalty area.
        {team} lined up in {formation}, with {player} at {position}.
        {coach} switched to {formation} at the break and the change paid off at once.
        The home side pressed high and won the ball back repeatedly in midfield.
        {player} was shown a yellow card for a late tackle on the halfway line.
        A video review ruled out the goal for offside, to the fury of the home supporters.
        The goalkeeper made a double save to deny {player} from six yards.
        {player} curled a free kick over the wall and into the top corner.
        The final score was {score}, which left {team} {small} points behind the leaders.
        {rival} sat in a low block and tried to hit {team} on the counterattack.
        The {position} played a through ball behind the defence for {player} to run onto.
        After the match, {coach} praised the players for their energy and discipline.
        {player} has now scored {num} goals in all competitions this season.
        The supporters in the away end sang throughout the second half.
        {team} dominated possession but created few clear chances in the final third.
        A sliding tackle from {player} stopped a certain goal in stoppage time.
        {player} picked up a hamstring injury and was replaced by the young {position}.
        The transfer fee for {player} was reported to be close to {num} million.
        {coach} used all five substitutions as the game stretched in the closing minutes.
        The {position} overlapped down the left flank and whipped in a dangerous cross.
        {rival} hit the woodwork twice before half-time and could have been ahead.
        The referee showed a straight red card for a dangerous challenge.
        {team} have kept {small} clean sheets in a row, their best run in years.
        The captain, {player}, lifted the trophy in front of the traveling fans.
        Pundits questioned the decision to leave {player} on the bench.
        A one-two on the edge of the box opened space for {player} to shoot.
        {player} completed a hat-trick with a composed finish past the goalkeeper.
        The penalty shootout went to sudden death after both sides scored their first five kicks.
        The defensive line held firm, with {player} winning almost every header.
        Attendance was just over {crowd} thousand, a record for the stadium.
        {team} face {rival} again next {weekday} in the league.
        The counter-press forced errors from the opposition defenders again and again.
        {coach} said the squad would recover and focus on the next fixture.
        A corner kick was flicked on at the near post and bundled in at the back stick.
        The {position} was booked for time-wasting as the clock ran down.
        {player}'s long-range strike was the goal of the season, according to many fans.
    """),
    closing=_t("""
        The result keeps {team} in the hunt as the season enters its final stretch.
        For {rival}, the search for answers goes on before the next fixture.
        Whatever happens next, {focus} will be remembered by both sets of supporters.
        {coach} will have plenty to think about on the training ground this week.
    """),
    words={
        "club": _w("""
            Riverside Rovers | Northgate United | Harbor City | Ashford Athletic |
            Kingsbridge Wanderers | Millbrook Town | Eastfield Albion | Castleton Rangers |
            Westport City | Ironbridge Celtic | Bayview Dynamo | Redhill Olympic |
            Stonehaven County | Lakeside Sporting | Oakmere Forest | Southbrook Villa
        """),
        "position": _w("""
            goalkeeper | center-back | right-back | left-back | wing-back |
            defensive midfielder | central midfielder | playmaker | winger | striker |
            center-forward | attacking midfielder
        """),
        "shot": _w("""
            a curling shot from the edge of the box | a diving header | a volley |
            a low shot into the bottom corner | a chip over the goalkeeper |
            a thunderous long-range strike | a tap-in at the back post | a cool penalty |
            a deflected effort | a first-time finish | a glancing header
        """),
        "formation": _w("""
            a 4-3-3 formation | a 3-5-2 system | a 4-2-3-1 shape | a 4-4-2 diamond |
            a back three | a 5-4-1 block | a 4-1-4-1 setup
        """),
    },
    doc_slots={
        "team": ("club", 1),
        "rival": ("club", 1),
        "player": ("fullname", 7),
        "coach": ("fullname", 1),
    },
)

GARDENING = Topic(
    name="gardening",
    focus=_w("""
        climbing roses | lavender bushes | hydrangeas | dahlias | hostas | clematis vines |
        peonies | boxwood hedges | sunflowers | tulip bulbs | hardy ferns | sweet peas |
        wildflowers | rhododendrons | Japanese maples | hellebores | delphiniums | foxgloves |
        ornamental grasses | camellias | flowering shrubs | young apple trees | lilies |
        snowdrops | daffodils | wisteria | hedging plants | perennial borders | geraniums |
        rambling roses | magnolias | fuchsias | alpines in a rockery | climbing honeysuckle
    """),
    intro=_t("""
        Few plants give as much pleasure for as little effort as {focus}.
        Growing {focus} well comes down to soil, light, water and timing.
        Gardeners have been growing {focus} in borders and allotments for generations.
        This guide covers planting, feeding and pruning {focus} through the year.
        In my garden, {focus} are the first thing visitors ask about.
        If you have a sunny spot and a little patience, you can grow {focus}.
        {focus} can thrive in a small garden, a raised bed or even a large container.
    """),
    body=_t("""
        Plant {focus} in {season}, in {soil} enriched with {amend}.
        Water deeply once or twice a week rather than a little every day.
        A layer of {amend} around the base keeps the roots cool and suppresses weeds.
        Watch for {pest}, which can strip the {part} in a matter of days.
        {task} in {season} encourages strong new growth and more flowers.
        Use {digtool} to loosen the soil before sowing the seeds in shallow drills.
        Most {focus} prefer full sun and a sheltered position out of cold winds.
        Through photosynthesis, the {part} turn sunlight, water and carbon dioxide into sugars.
        Sow seeds indoors {small} weeks before the last frost and harden them off gradually.
        Feed with a high-potash fertiliser once the first flowers appear.
        Heavy {soil} holds water, so add grit or compost to improve drainage.
        {pest} is easier to prevent than to cure, so inspect the {part} regularly.
        Companion planting with marigolds or nasturtiums may help deter {pest}.
        Stake tall stems early, before the wind and rain flatten them.
        Space the plants about {num} centimetres apart so that air can circulate freely.
        {task} is a job best done on a dry, mild day in {season}.
        The roots form a partnership with mycorrhizal fungi that helps them take up nutrients.
        Bees and hoverflies visit the flowers and carry pollen from plant to plant.
        A soil test will tell you whether the ground is acidic, neutral or alkaline.
        Keep secateurs sharp and clean so that cuts heal quickly and disease does not spread.
        In {season}, the {part} begin to yellow as the plant moves its energy underground.
        Mulch with {amend} after {task} to lock in moisture through the dry months.
        Clear fallen leaves from the flower bed to stop {pest} overwintering in the soil.
        Leaves curling at the edges are often a sign of {pest} or irregular watering.
        {first} {surname}, who has kept an allotment for {num} years, swears by {amend}.
        Remove faded flowers regularly; deadheading keeps the display going for weeks.
        Move {focus} into {shelter} if frost threatens in {season}.
        Plant spring bulbs in autumn, about three times as deep as the bulb is tall.
        Cuttings taken in {season} root quickly in a mix of compost and perlite.
        Seedlings that are leggy and pale need more light and a cooler room.
        Thin the seedlings to the strongest plants once they have their first true leaves.
        Earth up the stems as they grow to protect them and encourage more roots.
        Water the border in the early morning, before the sun scorches the {part}.
        Prune out dead, damaged and crossing branches to open up the centre of the plant.
        {pest} thrives in warm, humid weather, so improve airflow where you can.
        A cold frame lets you start tender plants early and protect them from late frost.
        Dig plenty of {amend} into the planting hole before setting the root ball in place.
        The {part} unfurl in {season}, bright green against the dark soil.
        Collect rainwater in a water butt; plants prefer it to hard tap water.
        Divide congested clumps every few years to keep them vigorous and flowering well.
    """),
    closing=_t("""
        With a little care, {focus} will reward you with a fine show year after year.
        Every season in the garden teaches something new about growing {focus}.
        Keep notes on what worked with {focus}, and next year will be even better.
        Nothing beats stepping outside on a summer evening to check on the {focus}.
    """),
    words={
        "soil": _w("""
            heavy clay soil | sandy soil | rich loam | chalky soil | acidic soil |
            peat-free potting mix | free-draining soil | moisture-retentive soil
        """),
        "amend": _w("""
            garden compost | leaf mould | well-rotted manure | bark chips | worm castings |
            bone meal | seaweed extract | chopped straw | composted bark | spent mushroom compost
        """),
        "pest": _w("""
            aphids | slugs and snails | vine weevil | powdery mildew | honey fungus |
            black spot | rust | whitefly | sawfly larvae | red spider mite | box blight |
            root rot | leaf spot | scale insects | grey mould | lily beetle | rose thrips
        """),
        "task": _w("""
            Deadheading | Pruning | Staking | Mulching | Sowing seeds | Pricking out seedlings |
            Hardening off | Dividing clumps | Taking cuttings | Double digging | Thinning |
            Top dressing | Layering | Weeding | Repotting | Feeding
        """),
        "part": _w("""
            leaves | stems | buds | petals | seed heads | rhizomes | tubers | runners |
            shoots | roots | flowers | foliage | flower buds | seedlings | blooms
        """),
        "tool": _w("""
            a hand trowel | sharp secateurs | a garden fork | a border spade | a hoe |
            a cold frame | a greenhouse | a raised bed | a heated propagator | cloches |
            a polytunnel | terracotta pots | a dibber
        """),
        "digtool": _w("a hand trowel | a garden fork | a border spade | a hoe | a rake"),
        "shelter": _w("a greenhouse | a cold frame | a polytunnel | a sheltered porch"),
        "season": _w("""
            early spring | late spring | early summer | midsummer | late summer | autumn |
            late autumn | mild spells in winter | the weeks after the last frost
        """),
    },
)

LAW = Topic(
    name="law",
    focus=_w("""
        a breach of contract claim | a residential tenancy dispute | a negligence lawsuit |
        an unfair dismissal claim | a trademark infringement action | a criminal appeal |
        a contested will | a defamation claim | a child custody hearing | a zoning appeal |
        a consumer class action | an insurance coverage dispute | a patent infringement suit |
        a personal injury claim | an application for judicial review |
        an antitrust investigation | a boundary dispute between neighbours |
        a commercial arbitration | a copyright infringement claim | a construction dispute
    """),
    intro=_t("""
        {case} is often cited as a leading authority on {focus}.
        Lawyers who handle {focus} know that the outcome often turns on the evidence.
        This note summarizes the law governing {focus} and the main defences.
        In {case}, the court had to decide a question that arises in many a {focus}.
        {focus} raises questions of procedure as well as of substantive law.
        Anyone involved in {focus} should understand how the courts approach it.
        The judgment in {case} changed how practitioners think about {focus}.
    """),
    body=_t("""
        Under {doctrine}, {party} must prove each element of the claim.
        In {case}, the court held that {doctrine} applied to the facts.
        {party} argued that {document} contained an implied term that had been breached.
        The burden of proof rests on {party}, on the balance of probabilities.
        In criminal cases, the prosecution must prove guilt beyond reasonable doubt.
        The limitation period for {focus} is usually {small} years from the date of the loss.
        {party} filed a motion to dismiss for lack of jurisdiction.
        Judge {judge} ruled that the evidence was inadmissible hearsay.
        The appellate court reversed the judgment and remanded the case for a new trial.
        Damages are meant to put the injured party in the position it would have been in.
        {party} failed to mitigate its loss, so the award of damages was reduced.
        The court granted an injunction restraining {party} from using the trademark.
        {document} required written notice of termination at least {num} days in advance.
        Counsel for {party} cross-examined the expert witness on her methodology.
        A duty of care arises where harm is reasonably foreseeable and the parties are proximate.
        Under {statute}, {party} must give reasons for the decision in writing.
        The jury returned a verdict after {small} days of deliberation.
        {party} sought specific performance rather than damages, arguing the land was unique.
        The settlement agreement included a confidentiality clause and a release of all claims.
        Precedent binds lower courts, though judges may distinguish a case on its facts.
        Discovery revealed emails showing that {party} knew of the defect.
        The clause was struck down as an unenforceable penalty rather than liquidated damages.
        In {year}, the legislature amended {statute} to close the loophole.
        Judge {judge} granted summary judgment because there was no genuine dispute of fact.
        The doctrine of estoppel prevented {party} from going back on its promise.
        {party} claimed that a force majeure clause excused its failure to perform.
        Contributory negligence reduced the award by {pct} percent.
        The deposition transcript contradicted the witness's earlier affidavit.
        Res judicata barred {party} from relitigating a claim already decided.
        The employer is vicariously liable for torts committed in the course of employment.
        A non-compete clause must be reasonable in scope, duration and geography.
        The tribunal found that the dismissal was procedurally unfair.
        {party} appealed on the ground that the trial judge misdirected the jury.
        Legal costs in {focus} often exceed the amount in dispute.
        Mediation can resolve {focus} faster and more cheaply than a full trial.
        The parol evidence rule limits the use of earlier negotiations to vary a written contract.
        The court read {document} as a whole, giving the words their ordinary meaning.
        {party} was ordered to pay costs on the indemnity basis.
        Counsel cited {case} for the proposition that {doctrine} cannot be excluded by contract.
        Standing requires a plaintiff to show a concrete injury caused by the defendant.
    """),
    closing=_t("""
        Anyone facing {focus} should take legal advice early, before deadlines pass.
        The law on {focus} continues to develop as new cases reach the appellate courts.
        {case} remains the starting point for any analysis of {focus}.
        In the end, careful drafting prevents most disputes of this kind.
    """),
    words={
        "party": _w("""
            the plaintiff | the defendant | the claimant | the respondent | the appellant |
            the landlord | the tenant | the employer | the employee | the insurer |
            the executor of the estate | the licensee | the contractor | the city council
        """),
        "doctrine": _w("""
            the doctrine of estoppel | the duty of care | strict liability |
            vicarious liability | the rule against penalties | promissory estoppel |
            the implied covenant of good faith | the doctrine of frustration |
            the reasonable person standard | fiduciary duty | the duty to mitigate |
            the business judgment rule | the exclusionary rule | natural justice
        """),
        "document": _w("""
            the contract | the lease agreement | the will | the settlement agreement |
            the employment contract | the insurance policy | the license agreement |
            the terms and conditions | the shareholders' agreement | the deed of trust |
            the statement of claim | the power of attorney
        """),
        "statute": _w("""
            the Consumer Protection Act | the Employment Rights Act | the Limitation Act |
            the Landlord and Tenant Act | the Freedom of Information Act | the Trademarks Act |
            the Civil Procedure Rules | the Administrative Procedure Act | the Sale of Goods Act
        """),
        "casename": _w("""
            Harlow v. Brennan | Okafor v. Metro Transit Authority | State v. Whitcombe |
            Lindqvist v. Pemberton Holdings | Adeyemi v. Castle Insurance | Re Estate of Novak |
            Ferreira v. Kingsbridge Council | Galloway Builders v. Strand | People v. Calloway |
            Moreau v. Northern Rail | Haddad v. Sandoval | Ellison Foods v. Redfern Logistics
        """),
    },
    doc_slots={"case": ("casename", 1), "judge": ("surname", 2)},
)

TOPICS: tuple[Topic, ...] = (
    ASTRONOMY,
    COOKING,
    FINANCE,
    MEDICINE,
    SOFTWARE,
    FOOTBALL,
    GARDENING,
    LAW,
)


# --------------------------------------------------------------------------------------
# Text assembly
# --------------------------------------------------------------------------------------

_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"\b(a|an|A|An) ([A-Za-z0-9]+)")
_AN_EXCEPTIONS = ("one", "uni", "use", "usu", "uti", "eu", "ur", "Eu", "Uni", "One")


def _fix_articles(text: str) -> str:
    """Choose ``a``/``an`` by the following word (``a`` + ``ancient`` -> ``an ancient``)."""

    def repl(m: re.Match[str]) -> str:
        art, word = m.group(1), m.group(2)
        lower = word.lower()
        vowel = lower[0] in "aeiou" and not lower.startswith(_AN_EXCEPTIONS)
        vowel = vowel or lower.startswith(("hour", "honest", "8", "11", "18"))
        vowel = vowel or (word.isupper() and len(word) > 1 and word[0] in "AEFHILMNORSX")
        new = "an" if vowel else "a"
        if art[0].isupper():
            new = new.capitalize()
        return f"{new} {word}"

    return _ARTICLE.sub(repl, text)


class DocWriter:
    """Fill one topic's templates for one document."""

    def __init__(self, topic: Topic, rng: random.Random) -> None:
        self.topic = topic
        self.rng = rng
        self.fixed: dict[str, list[str]] = {}
        for slot, (source, k) in topic.doc_slots.items():
            self.fixed[slot] = [self._draw(source) for _ in range(k)]
        if "rival" in self.fixed and "team" in self.fixed:
            while self.fixed["rival"] == self.fixed["team"]:
                self.fixed["rival"] = [self._draw("club")]
        # Each document leans on its own subset of the templates, so that documents of one
        # topic read differently while sharing the vocabulary.
        self.body: list[str] = []
        self.deck: list[str] = []
        self.new_section(rng.choice(topic.focus))

    def new_section(self, focus: str) -> None:
        """Change subject and draw a fresh subset of templates."""
        self.fixed["focus"] = [focus]
        k = max(8, int(len(self.topic.body) * self.rng.uniform(0.55, 0.8)))
        self.body = self.rng.sample(self.topic.body, k)
        self.deck = []

    def next_template(self) -> str:
        """Deal templates like cards, so a sentence pattern recurs only once all were used."""
        if not self.deck:
            self.deck = self.body[:]
            self.rng.shuffle(self.deck)
        return self.deck.pop()

    def _draw(self, slot: str) -> str:
        if slot in self.fixed:
            return self.rng.choice(self.fixed[slot])
        if slot in self.topic.words:
            return self.rng.choice(self.topic.words[slot])
        if slot in SHARED_SLOTS:
            return SHARED_SLOTS[slot](self.rng)
        raise KeyError(f"unknown slot {{{slot}}} in topic {self.topic.name}")

    def fill(self, template: str) -> str:
        used: set[str] = set()

        def draw(m: re.Match[str]) -> str:
            value = self._draw(m.group(1))
            for _ in range(4):  # avoid "from rent to rent" within one sentence
                if value not in used:
                    break
                value = self._draw(m.group(1))
            used.add(value)
            return value

        text = template
        for _ in range(3):  # slot values may themselves contain slots
            if "{" not in text:
                break
            text = _SLOT.sub(draw, text)
        text = _fix_articles(text)
        return text[0].upper() + text[1:]

    def sentence(self, filler_rate: float = 0.04) -> str:
        if self.rng.random() < filler_rate:
            return self.rng.choice(GENERIC_FILLER)
        return self.fill(self.next_template())

    def paragraph(self, n: int, first: bool = False) -> str:
        sents = [self.fill(self.rng.choice(self.topic.intro))] if first else []
        while len(sents) < n:
            s = self.sentence()
            if s not in sents:
                sents.append(s)
        return " ".join(sents)


def make_document(topic: Topic, target_tokens: int, rng: random.Random) -> str:
    """Write one document of about ``target_tokens`` tokens on ``topic``."""
    writer = DocWriter(topic, rng)
    target_words = max(12, round(target_tokens / TOKENS_PER_WORD))
    if target_words < 70:  # a note of two to four sentences, all on topic
        sents = [writer.fill(rng.choice(topic.intro))]
        while sum(len(s.split()) for s in sents) < target_words:
            sents.append(writer.fill(writer.next_template()))
        return " ".join(sents)

    blocks: list[str] = []
    words = 0
    long_doc = target_words > 2_500
    next_section = rng.randint(6, 10)
    while words < target_words:
        if long_doc and len(blocks) >= next_section:
            # Long documents read like handbooks: new section, new subject, same topic.
            focus = rng.choice(topic.focus)
            writer.new_section(focus)
            heading = focus[0].upper() + focus[1:]
            blocks.append(heading)
            blocks.append(writer.paragraph(rng.randint(3, 7), first=True))
            next_section = len(blocks) + rng.randint(6, 12)
        else:
            blocks.append(writer.paragraph(rng.randint(3, 7), first=not blocks))
        words += len(blocks[-1].split())
    if rng.random() < 0.7:
        blocks.append(writer.fill(rng.choice(topic.closing)))
    return "\n\n".join(blocks)


def plan_lengths(rng: random.Random) -> list[tuple[Topic, int]]:
    """Pick ``(topic, target tokens)`` for every document, in output order."""
    n_topics = len(TOPICS)
    plan: list[tuple[Topic, int]] = []
    per_topic: list[list[int]] = [[] for _ in TOPICS]
    specials = list(LONG_TARGETS) + list(MID_TARGETS) + list(SHORT_TARGETS)
    offset = rng.randrange(n_topics)
    for i, target in enumerate(specials):
        per_topic[(i + offset) % n_topics].append(target)
    lo, hi = LOGNORMAL_CLIP
    for targets in per_topic:
        while len(targets) < DOCS_PER_TOPIC:
            x = rng.lognormvariate(0.0, LOGNORMAL_SIGMA) * LOGNORMAL_MEDIAN
            targets.append(round(min(max(x, lo), hi)))
    for topic, targets in zip(TOPICS, per_topic, strict=True):
        plan.extend((topic, t) for t in targets)
    rng.shuffle(plan)
    return plan


def build_corpus(seed: int = SEED) -> list[dict[str, str]]:
    """Generate all records (``docid``, ``content``, ``topic``) deterministically."""
    rng = random.Random(seed)
    records: list[dict[str, str]] = []
    for i, (topic, target) in enumerate(plan_lengths(rng), start=1):
        text = make_document(topic, target, random.Random(f"{seed}-{i}"))
        records.append({"docid": f"sample-{i:04d}", "content": text, "topic": topic.name})
    return records


def write_jsonl_gz(records: list[dict[str, str]], out: Path) -> int:
    """Write records as gzip-compressed JSON lines with a reproducible header; return size."""
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(payload.encode("utf-8"))
    data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return len(data)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output .jsonl.gz path")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed")
    args = parser.parse_args(argv)
    records = build_corpus(args.seed)
    size = write_jsonl_gz(records, args.out)
    words = sum(len(r["content"].split()) for r in records)
    print(f"wrote {len(records)} documents, {words:,} words, {size:,} bytes to {args.out}")


if __name__ == "__main__":
    main()
