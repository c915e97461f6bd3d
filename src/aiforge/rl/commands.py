"""`aiforge play`: evaluate a trained RL agent and optionally record an episode as a GIF.

Imports nothing heavy at module level (torch, gymnasium and the recipes load inside the
command), so that `aiforge --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from aiforge.core.errors import InputError

PLAYABLE = ("rl.q-learning", "rl.dqn", "rl.reinforce", "rl.ppo", "rl.ppo-pendulum", "rl.robotics")
MAX_EPISODES = 10_000
MAX_GIF_FRAMES = 600


def record_gif(env_id: str, act: Callable[[Any], Any], path: Path, seed: int, fps: int = 30) -> int:
    """Render one greedy episode to an animated GIF; returns the number of frames written."""
    import os

    import imageio.v2 as imageio

    from aiforge.rl.common import make_env

    # Off-screen rendering needs no display: pygame (classic control, toy text) gets its dummy
    # video driver, MuJoCo the headless EGL back end (its default, GLFW, needs a window).
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("MUJOCO_GL", "egl")

    env = make_env(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    try:
        frames, done = [env.render()], False
    except Exception as err:  # GL back ends fail with several types; name the fix
        raise InputError(f"cannot render {env_id} off-screen ({type(err).__name__}: {err}); "
                         "try MUJOCO_GL=egl or MUJOCO_GL=osmesa") from None
    while not done:
        obs, _, terminated, truncated, _ = env.step(act(obs))
        done = terminated or truncated
        frames.append(env.render())
    env.close()
    stride = -(-len(frames) // MAX_GIF_FRAMES)  # ceil: at most MAX_GIF_FRAMES frames
    kept = frames[::stride]
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, kept, duration=1000 * stride / fps, loop=0)
    return len(kept)


def play(recipe: str, run: Path, *, episodes: int = 10, gif: Path | None = None,
         seed: int = 0) -> dict[str, float]:
    """Greedy returns of the agent saved in `run` over `episodes` episodes (seeds seed,
    seed+1, ...), and a GIF of the first episode when `gif` is given."""
    if recipe not in PLAYABLE:
        raise InputError(f"cannot play {recipe!r}; playable recipes: {', '.join(PLAYABLE)}")
    if not 1 <= episodes <= MAX_EPISODES:
        raise InputError(f"--episodes must lie in 1..{MAX_EPISODES}, got {episodes}")
    if gif is not None and gif.suffix.lower() != ".gif":
        raise InputError(f"--gif must name a .gif file, got {gif}")

    from aiforge.core.loading import load_model, load_model_config
    from aiforge.rl.common import evaluate_policy

    meta = load_model_config(run)
    if meta["recipe"] != recipe:
        raise InputError(f"{run} is a run of {meta['recipe']!r}, not {recipe!r}")
    env_id = str(meta["config"]["env_id"])  # type: ignore[index]
    agent = load_model(run)
    returns = evaluate_policy(env_id, agent.act, episodes, seed)  # type: ignore[arg-type]
    result = {"episodes": float(episodes), "mean_return": float(returns.mean()),
              "std_return": float(returns.std()), "min_return": float(returns.min()),
              "max_return": float(returns.max())}
    if gif is not None:
        frames = record_gif(env_id, agent.act, gif, seed)  # type: ignore[arg-type]
        result["gif_frames"] = float(frames)
    return result


def register_commands(app: typer.Typer) -> None:
    @app.command("play")
    def play_command(
        recipe: Annotated[str, typer.Argument(help=f"One of: {', '.join(PLAYABLE)}.")],
        run: Annotated[Path, typer.Option("--run", help="Run folder of a trained agent.")],
        episodes: Annotated[int, typer.Option("--episodes", help="Evaluation episodes.")] = 10,
        gif: Annotated[Path | None,
                       typer.Option("--gif", help="Write an episode as an animated GIF.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the first episode.")] = 0,
    ) -> None:
        """Evaluate a trained RL agent greedily and optionally record an episode as a GIF."""
        try:
            result = play(recipe, run, episodes=episodes, gif=gif, seed=seed)
        except InputError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"{recipe}: mean return {result['mean_return']:.2f} ± "
                   f"{result['std_return']:.2f} over {episodes} episodes "
                   f"(min {result['min_return']:.1f}, max {result['max_return']:.1f})")
        if gif is not None:
            typer.echo(f"gif: {gif} ({int(result['gif_frames'])} frames)")
