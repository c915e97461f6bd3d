"""A simulated user for recommendation as sequential decision making.

One episode is one session of one user. Every step the recommender shows a *shelf* (a slate
of `slate_size` items); the user clicks some of them, grows bored of what is shown again and
again, and may leave. The return is the number of clicks in the session: long-term
engagement, not the click rate of one step.

Catalogue. `n_topics` topics, `items_per_topic` items each. Item i of topic k has a latent
feature vector v_i = normalise(e_k + item_noise * N(0, I)) in R^K (mostly its topic, a little
of the others). The catalogue is fixed by `catalogue_seed`, the same in every session.

User. A new user per episode with a latent preference u ~ Dirichlet(pref_alpha * 1_K): a
small alpha makes tastes peaked on one or two topics. Affinity to item i is u . v_i in [0, 1].
The recommender sees a noisy profile u + profile_noise * N(0, I) (what past sessions tell a
real system), never u itself.

Action. The index a of an item; the shelf is a followed by its slate_size - 1 nearest
catalogue neighbours (cosine similarity), in that order ("more like this").

Clicks: the position-based model (Craswell et al., 2008). Position j of the shelf is
examined with probability e_j = 1 / (j + 1)^position_decay (position bias); an examined item
is clicked with probability sigmoid(z_i), independently, with the utility

  z_i = affinity_weight * (u . v_i) - boredom_weight * beta_i + click_bias.

Boredom (fatigue). The exposure vector b in R^K remembers what was shown:

  b_{t+1} = boredom_decay * b_t + (1 - boredom_decay) * mean_{j in shelf} v_j,

so it grows in the direction of items shown repeatedly and decays otherwise. An item's
boredom is its similarity to recent exposure, beta_i = b . v_i (0 when fresh, near 1 when the
user has seen only its kind lately).

Leaving. After the clicks the user's satisfaction with the step is
sat_t = clicks_t - leave_boredom * mean_{j in shelf} beta_j, and the session ends with
probability p_leave = sigmoid(leave_bias - leave_satisfaction * sat_t), else goes on to at
most `max_steps` steps (a time-limit truncation, not a terminal state).

Why greedy clicking hurts. Boredom costs a little in the click utility and much in the
leave probability, so the shelf with the highest immediate click probability (the user's
favourite topic, again and again) bores the user, who leaves early. A policy that mixes in
the user's second-best topics clicks a little less per step and keeps the user much longer:
only an agent that plans over the session (RL) finds it; a bandit maximising the next click
does not.

Observation (float32, 2K + 1): [profile u_obs (K), exposure b (K), t / max_steps]. All of
it is known to a real platform (the profile, what it showed, the session clock), so the
state is Markov up to the profile's noise.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class UserSimConfig(BaseModel):
    """The simulator's parameters (part of the recipe config, saved with every run)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    n_topics: int = Field(5, ge=2)
    """Latent dimensions K = topics of the catalogue."""
    items_per_topic: int = Field(3, ge=1)
    """Items of each topic; the catalogue holds n_topics * items_per_topic items."""
    item_noise: float = Field(0.15, ge=0)
    """Spread of item features around their topic direction."""
    catalogue_seed: int = 1234
    """Seed of the (fixed) catalogue."""
    slate_size: int = Field(3, ge=1)
    """Items per shelf (slate)."""
    position_decay: float = Field(1.0, ge=0)
    """Examination probability of position j is 1 / (j + 1)^position_decay (0: no bias)."""
    pref_alpha: float = Field(0.4, gt=0)
    """Dirichlet concentration of user preferences (small: peaked tastes)."""
    profile_noise: float = Field(0.05, ge=0)
    """Standard deviation of the noise on the observed profile."""
    affinity_weight: float = 6.0
    """Weight of affinity u . v_i in the click utility."""
    boredom_weight: float = 0.25
    """Weight of boredom beta_i in the click utility."""
    click_bias: float = -3.0
    """Offset of the click utility."""
    boredom_decay: float = Field(0.8, ge=0, lt=1)
    """How much of the exposure vector survives a step."""
    leave_bias: float = -4.0
    """Leave logit at zero satisfaction."""
    leave_satisfaction: float = 1.5
    """How much satisfaction lowers the leave logit."""
    leave_boredom: float = 3.0
    """How much the shelf's mean boredom lowers satisfaction."""
    max_steps: int = Field(30, ge=1)
    """Session length cap (truncation)."""

    @property
    def n_items(self) -> int:
        return self.n_topics * self.items_per_topic


def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def make_catalogue(cfg: UserSimConfig) -> tuple[np.ndarray, np.ndarray]:
    """Item features (n_items, K) with unit norm and each item's topic (n_items,)."""
    rng = np.random.default_rng(cfg.catalogue_seed)
    topics = np.repeat(np.arange(cfg.n_topics), cfg.items_per_topic)           # (N,)
    feats = np.eye(cfg.n_topics)[topics] + cfg.item_noise * rng.normal(size=(len(topics), cfg.n_topics))
    feats = np.abs(feats)  # non-negative features keep affinity u . v in [0, 1]
    return feats / np.linalg.norm(feats, axis=1, keepdims=True), topics


def make_shelves(items: np.ndarray, slate_size: int) -> np.ndarray:
    """(n_items, slate_size): item a followed by its nearest neighbours by cosine similarity."""
    sim = items @ items.T                                                        # (N, N)
    np.fill_diagonal(sim, np.inf)  # the anchor itself comes first
    return np.argsort(-sim, axis=1, kind="stable")[:, :slate_size]


class UserChoiceEnv(gym.Env):
    """The session simulator; see the module docstring for its dynamics."""

    metadata: ClassVar[dict[str, list[str]]] = {"render_modes": []}

    def __init__(self, cfg: UserSimConfig | None = None) -> None:
        self.cfg = cfg or UserSimConfig()
        self.items, self.topics = make_catalogue(self.cfg)
        self.shelves = make_shelves(self.items, self.cfg.slate_size)
        K = self.cfg.n_topics
        self.examination = 1.0 / np.arange(1, self.cfg.slate_size + 1) ** self.cfg.position_decay
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(2 * K + 1,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(self.cfg.n_items)
        self.user = np.zeros(K)
        self.profile = np.zeros(K)
        self.exposure = np.zeros(K)
        self.t = 0

    # -- the documented model, as functions of the state ---------------------------------
    def boredom(self, items: np.ndarray) -> np.ndarray:
        """beta_i = b . v_i for the given item indices."""
        return self.items[items] @ self.exposure

    def click_probabilities(self, slate: np.ndarray) -> np.ndarray:
        """P(click) at each position of `slate`: examination e_j times sigmoid(z_i)."""
        c = self.cfg
        z = (c.affinity_weight * self.items[slate] @ self.user
             - c.boredom_weight * self.boredom(slate) + c.click_bias)
        return self.examination[: len(slate)] * sigmoid(z)

    def leave_probability(self, slate: np.ndarray, clicks: float) -> float:
        c = self.cfg
        satisfaction = clicks - c.leave_boredom * float(self.boredom(slate).mean())
        return float(sigmoid(c.leave_bias - c.leave_satisfaction * satisfaction))

    def expected_clicks(self) -> np.ndarray:
        """E[clicks] of every action now (what a perfect myopic recommender maximises)."""
        c = self.cfg
        feats = self.items[self.shelves]                                         # (N, L, K)
        z = (c.affinity_weight * feats @ self.user - c.boredom_weight * feats @ self.exposure
             + c.click_bias)                                                     # (N, L)
        return (self.examination * sigmoid(z)).sum(-1)                           # (N,)

    # -- gymnasium API -------------------------------------------------------------------
    def observe(self) -> np.ndarray:
        return np.concatenate([self.profile, self.exposure,
                               [self.t / self.cfg.max_steps]]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None
              ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        c = self.cfg
        self.user = self.np_random.dirichlet(np.full(c.n_topics, c.pref_alpha))
        self.profile = self.user + c.profile_noise * self.np_random.normal(size=c.n_topics)
        self.exposure = np.zeros(c.n_topics)
        self.t = 0
        return self.observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        c = self.cfg
        slate = self.shelves[int(action)]
        p_click = self.click_probabilities(slate)
        clicked = self.np_random.random(len(slate)) < p_click
        clicks = float(clicked.sum())
        p_leave = self.leave_probability(slate, clicks)       # boredom before this shelf
        left = bool(self.np_random.random() < p_leave)
        self.exposure = c.boredom_decay * self.exposure + (1 - c.boredom_decay) * self.items[slate].mean(0)
        self.t += 1
        info = {"p_click": p_click, "p_leave": p_leave, "clicked": clicked, "slate": slate}
        return self.observe(), clicks, left, self.t >= c.max_steps and not left, info
