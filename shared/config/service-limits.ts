/**
 * Bounds on what one request may ask of a service, so that no client can make a service spend
 * minutes or gigabytes on a single call. Each is the default of a flag (`rmt serve <service>
 * --help`, docs/services.md); a request over a bound is refused with INVALID_ARGUMENT (or
 * RESOURCE_EXHAUSTED for a message over the gRPC size), naming the field.
 */
export const SERVICE_LIMITS = {
  /** Bytes of a run config (StartRun's YAML, a RunRef's JSON), checked before it is parsed. */
  max_config_bytes: 1 << 20,
  /** Characters of a run id. */
  max_run_id_chars: 128,
  /** Characters of one Tokenize text (about a second of tokenizing). */
  max_tokenize_chars: 1 << 20,
  /** Token ids of one Detokenize. */
  max_detokenize_ids: 1 << 18,
  /** Largest gRPC message a service accepts, in MiB: the learner takes a step's rollouts, the
   * others take configs and positions. */
  max_receive_mib: { scorer: 8, rollout: 16, learner: 64, coordinator: 4 },
  /** Runs whose config and tokenizer a scorer, learner or rollout service keeps loaded (the least
   * recently used go first; a run seen again is loaded again from its RunRef). */
  run_contexts_kept: 8,
  /** Tokenizer folders the scorer keeps loaded for Tokenize and Detokenize. */
  tokenizers_kept: 8,
  /** Token streams of runs the scorer keeps in memory (they are cached on disk too). */
  token_streams_kept: 4,
  /** Largest GetWeights chunk a client may ask for, in bytes (and the smallest, 4 KiB). */
  max_weights_chunk_bytes: 16 << 20,
  /** Finished runs the coordinator keeps answering GetRunStatus for (the oldest go first). */
  finished_runs_kept: 32,
  /** Seconds a finished run is kept at most. */
  finished_run_ttl_s: 24 * 3600,
  /** Seconds a learner keeps a run whose coordinator has stopped calling it (the coordinator is
   * gone) before letting it go; a restarted coordinator resumes the run after that. */
  learner_lease_s: 30,
  /** Longest pause, in seconds, between a coordinator's attempts to reach a learner that is away
   * (the pause doubles from half a second up to this). */
  learner_retry_max_s: 5,
  /** Data-parallel learners one step may be split over (TrainStepRequest.data_parallel.peers). */
  max_learners: 64,
} as const;
