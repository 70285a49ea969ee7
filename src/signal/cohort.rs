//! A synthetic cohort: people, their nights, and their episodes, from a documented model.
//!
//! Per person (all draws uniform unless said otherwise):
//! - **A personal level per signal**: rMSSD 20–110 ms (so naturally low people exist: the fixed
//!   limits' false alarms), resting HR 48–72 bpm, respiratory rate 12–18 /min, skin-temperature
//!   deviation around 0 °C.
//! - **Night-to-night noise.** ln rMSSD varies with SD = CV × ln(level), CV 5–10 % (Plews et al.
//!   2012 report 3–13 %), as an AR(1) process with φ = 0.3 (consecutive nights are alike; 0.5 in the `noisy` variant). Resting
//!   HR has SD 1.5–3 bpm and is correlated −0.5 with ln rMSSD on the same night (the autonomic
//!   balance moves both); respiratory rate SD 0.3–0.6 /min; temperature SD 0.1–0.25 °C.
//! - **Strain nights** (alcohol, hard training, a bad night): 4 % of nights, ln rMSSD −1 SD and
//!   resting HR +1 SD for that night only. They are not episodes: a rule that fires on them is
//!   wrong.
//! - **Episodes**: a share of people (½) have one, starting at a uniform night after day 35,
//!   lasting 7–12 nights. ln rMSSD drops by 1–1.5 of the person's SD; resting HR rises by
//!   1–2 SD, respiratory rate by 0.8–1.5 SD and temperature by 1–2.5 SD (an illness: Alavi et al.
//!   2022, Mason et al. 2022, Natarajan et al. 2020 describe these directions). The deviation
//!   ramps in over the first two nights. The "symptom" day is 2–4 nights after the onset.
//! - **Delivery**: each night is missing with probability `missing` (the watch not worn); a
//!   delivered night arrives late by 1–3 days with probability `late`, and is delivered twice
//!   (a vendor retry) with probability `repeated`.
//!
//! Randomness is a seeded SplitMix64 written here, not a crate's generator, so a seed gives the
//! same cohort on every release and SIGNAL.md's figures stay reproducible.

/// The model's knobs. `Model::variants` lists the ones the evaluation is run over.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Model {
    pub users: usize,
    pub nights: i32,
    /// Share of people with an episode.
    pub episode_share: f64,
    pub episode_nights: (i32, i32),
    /// ln rMSSD drop, in the person's own SDs.
    pub depth_sd: (f64, f64),
    /// Night-to-night SD of ln rMSSD as a share of ln(level).
    pub noise_cv: (f64, f64),
    /// Night-to-night autocorrelation of the noise (AR(1) φ).
    pub autocorrelation: f64,
    pub strain_night_rate: f64,
    pub missing: f64,
    pub late: f64,
    pub repeated: f64,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            users: 200,
            nights: 90,
            episode_share: 0.5,
            episode_nights: (7, 12),
            depth_sd: (1.0, 1.5),
            noise_cv: (0.05, 0.10),
            autocorrelation: 0.3,
            strain_night_rate: 0.04,
            missing: 0.10,
            late: 0.0,
            repeated: 0.02,
        }
    }
}

impl Model {
    /// The named variants: the base model, and one knob moved each.
    pub fn variants() -> Vec<(&'static str, Model)> {
        let base = Model::default();
        vec![
            ("base", base),
            // The issue's own measurement: independent nights, no strain nights, none missing.
            ("plain", Model { autocorrelation: 0.0, strain_night_rate: 0.0, missing: 0.0, repeated: 0.0, ..base }),
            // Scale alone changes nothing for a rule in SD units: noisier *and* more persistent
            // noise, and twice the strain nights.
            ("noisy", Model { noise_cv: (0.08, 0.13), autocorrelation: 0.5, strain_night_rate: 0.08, ..base }),
            ("shallow", Model { depth_sd: (0.8, 1.2), ..base }),
            ("short", Model { episode_nights: (5, 8), ..base }),
            ("sparse", Model { missing: 0.30, ..base }),
            ("late", Model { late: 0.20, ..base }),
        ]
    }

    pub fn variant(name: &str) -> Option<Model> {
        Model::variants().into_iter().find(|(n, _)| *n == name).map(|(_, m)| m)
    }
}

/// One person's night as measured (before delivery).
#[derive(Debug, Clone, PartialEq)]
pub struct Night {
    pub user: usize,
    pub night: i32,
    pub rmssd_ms: f64,
    pub resting_hr_bpm: f64,
    pub respiratory_rate: f64,
    pub temperature_deviation_c: f64,
}

/// A night's delivery: `day` is when it reaches the bridge (the night, or later).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub day: i32,
    pub night: Night,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Episode {
    pub user: usize,
    pub onset: i32,
    /// Last night of the episode (inclusive).
    pub end: i32,
    pub symptom_night: i32,
}

#[derive(Debug, Clone)]
pub struct Cohort {
    pub model: Model,
    pub episodes: Vec<Episode>,
    /// In delivery order: by arrival day, then night, then user.
    pub deliveries: Vec<Delivery>,
    /// Nights observed per person (delivered at least once).
    pub observed_nights: usize,
}

/// SplitMix64 (Steele et al. 2014): tiny, fast, and fixed forever.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn uniform(&mut self, (low, high): (f64, f64)) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform integer in [low, high].
    pub fn int(&mut self, (low, high): (i32, i32)) -> i32 {
        low + (self.next_u64() % (high - low + 1) as u64) as i32
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// How far into its ramp an episode's deviation is on `night` (0 outside the episode).
fn episode_weight(episode: Option<&Episode>, night: i32) -> f64 {
    match episode {
        Some(e) if (e.onset..=e.end).contains(&night) => (f64::from(night - e.onset + 1) / 2.0).min(1.0),
        _ => 0.0,
    }
}

/// Generates a cohort from `model` and `seed`.
pub fn generate(model: &Model, seed: u64) -> Cohort {
    let mut rng = Rng::new(seed);
    let mut episodes = Vec::new();
    let mut deliveries = Vec::new();
    let mut observed_nights = 0;
    for user in 0..model.users {
        let ln_level = rng.uniform((20.0, 110.0)).ln();
        let sd = rng.uniform(model.noise_cv) * ln_level;
        let (rhr_level, rhr_sd) = (rng.uniform((48.0, 72.0)), rng.uniform((1.5, 3.0)));
        let (resp_level, resp_sd) = (rng.uniform((12.0, 18.0)), rng.uniform((0.3, 0.6)));
        let temp_sd = rng.uniform((0.10, 0.25));
        let episode = rng.chance(model.episode_share).then(|| {
            let length = rng.int(model.episode_nights);
            let onset = rng.int((35, model.nights - length));
            Episode { user, onset, end: onset + length - 1, symptom_night: onset + rng.int((2, 4)) }
        });
        let (depth, rhr_rise, resp_rise, temp_rise) =
            (rng.uniform(model.depth_sd), rng.uniform((1.0, 2.0)), rng.uniform((0.8, 1.5)), rng.uniform((1.0, 2.5)));
        episodes.extend(episode);
        // AR(1) with marginal SD 1: innovation SD sqrt(1 - φ²).
        let phi = model.autocorrelation;
        let mut ar = rng.normal();
        for night in 0..model.nights {
            ar = phi * ar + (1.0 - phi * phi).sqrt() * rng.normal();
            let strain = if rng.chance(model.strain_night_rate) { 1.0 } else { 0.0 };
            let weight = episode_weight(episode.as_ref(), night);
            let hrv_z = ar - strain - weight * depth;
            let rhr_z = -0.5 * ar + 0.75f64.sqrt() * rng.normal() + strain + weight * rhr_rise;
            let measured = Night {
                user,
                night,
                rmssd_ms: round2((ln_level + sd * hrv_z).exp()),
                resting_hr_bpm: round2(rhr_level + rhr_sd * rhr_z),
                respiratory_rate: round2(resp_level + resp_sd * (rng.normal() + weight * resp_rise)),
                temperature_deviation_c: round2(temp_sd * (rng.normal() + weight * temp_rise)),
            };
            if rng.chance(model.missing) {
                continue;
            }
            observed_nights += 1;
            let day = if rng.chance(model.late) { night + rng.int((1, 3)) } else { night };
            if rng.chance(model.repeated) {
                deliveries.push(Delivery { day: day + rng.int((0, 1)), night: measured.clone() });
            }
            deliveries.push(Delivery { day, night: measured });
        }
    }
    deliveries.sort_by_key(|d| (d.day, d.night.night, d.night.user));
    Cohort { model: *model, episodes, deliveries, observed_nights }
}

/// Vendors report two decimals.
fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_cohort_and_the_model_shows() {
        let model = Model::default();
        let (a, b) = (generate(&model, 7), generate(&model, 7));
        assert_eq!(a.deliveries, b.deliveries);
        assert_ne!(a.deliveries, generate(&model, 8).deliveries);
        let share = a.episodes.len() as f64 / model.users as f64;
        assert!((0.4..0.6).contains(&share), "{share}");
        let kept = a.observed_nights as f64 / (model.users * model.nights as usize) as f64;
        assert!((0.87..0.93).contains(&kept), "{kept}");
        let low = a.deliveries.iter().filter(|d| d.night.rmssd_ms < 40.0).count() as f64 / a.deliveries.len() as f64;
        assert!((0.1..0.4).contains(&low), "naturally low people exist: {low}");
        assert!(a.deliveries.windows(2).all(|w| w[0].day <= w[1].day), "delivery order");
    }

    #[test]
    fn episodes_move_every_signal_in_illness_direction() {
        let cohort = generate(&Model { users: 400, ..Model::default() }, 1);
        let (mut inside, mut outside) = ([0.0; 4], [0.0; 4]);
        let (mut n_in, mut n_out) = (0.0, 0.0);
        let by_user: std::collections::HashMap<usize, Episode> = cohort.episodes.iter().map(|e| (e.user, *e)).collect();
        for d in &cohort.deliveries {
            let n = &d.night;
            let Some(e) = by_user.get(&n.user) else { continue };
            let values = [n.rmssd_ms.ln(), n.resting_hr_bpm, n.respiratory_rate, n.temperature_deviation_c];
            let (sum, count) = if (e.onset + 2..=e.end).contains(&n.night) { (&mut inside, &mut n_in) } else { (&mut outside, &mut n_out) };
            for (s, v) in sum.iter_mut().zip(values) {
                *s += v;
            }
            *count += 1.0;
        }
        let delta: Vec<f64> = inside.iter().zip(outside).map(|(i, o)| i / n_in - o / n_out).collect();
        assert!(delta[0] < 0.0 && delta[1] > 0.0 && delta[2] > 0.0 && delta[3] > 0.0, "{delta:?}");
    }

    #[test]
    fn late_deliveries_arrive_after_their_night() {
        let cohort = generate(&Model { late: 0.2, ..Model::default() }, 3);
        let late = cohort.deliveries.iter().filter(|d| d.day > d.night.night).count() as f64 / cohort.deliveries.len() as f64;
        assert!((0.15..0.25).contains(&late), "{late}");
        assert!(cohort.deliveries.iter().all(|d| (0..=4).contains(&(d.day - d.night.night))));
    }
}
