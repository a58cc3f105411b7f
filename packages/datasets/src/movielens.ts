import { type Tensor1D, tensor1d } from '@tensorflow/tfjs-core';
import type { DataLocation } from './byte-source.js';
import { contiguousIds } from './contiguous-ids.js';
import { parseNumberTable, tableColumn } from './number-table.js';
import { readDataFile } from './read-data-file.js';

const FILE = 'movielens_dslabs.csv.gz';

/** Tensors made by {@link MovieLensRatings.toTensors}; the caller disposes them. */
export interface RatingTensors {
  /** `[numRatings]` int32 user indices. */
  userIndex: Tensor1D;
  /** `[numRatings]` int32 movie indices. */
  movieIndex: Tensor1D;
  /** `[numRatings]` float32 ratings, 0.5..5 stars. */
  rating: Tensor1D;
}

/** MovieLens ratings with users and movies renumbered `0..n-1`. */
export interface MovieLensRatings {
  /** Number of ratings. */
  numRatings: number;
  /** Number of distinct users. */
  numUsers: number;
  /** Number of distinct rated movies. */
  numMovies: number;
  /** User of each rating, `0..numUsers-1`. */
  userIndex: Int32Array;
  /** Movie of each rating, `0..numMovies-1`. */
  movieIndex: Int32Array;
  /** Each rating, 0.5 to 5 stars in half stars. */
  rating: Float32Array;
  /** Time of each rating, unix seconds. */
  timestamp: Float64Array;
  /** MovieLens `userId` of each user index; ascending. */
  userIds: Int32Array;
  /** MovieLens `movieId` of each movie index; ascending. */
  movieIds: Int32Array;
  /** The ratings as tfjs tensors (see {@link RatingTensors}); the caller disposes them. */
  toTensors(): RatingTensors;
}

/**
 * Loads the MovieLens ml-latest-small ratings (GroupLens, 2016; research and non-commercial use):
 * 100,004 ratings by 671 users of 9,066 movies, in file order (by user, then movie). Users and
 * movies get contiguous indices; `userIds` and `movieIds` map them back. Throws a `DATA_MISSING`
 * or `DATA_CORRUPT` `DynnError` naming the file when it is absent or damaged.
 *
 * @example
 * ```ts
 * const ratings = await loadMovieLens();
 * const { userIndex, movieIndex, rating } = ratings.toTensors();
 * ```
 */
export async function loadMovieLens(location: DataLocation = {}): Promise<MovieLensRatings> {
  const table = parseNumberTable(await readDataFile(FILE, location), {
    columns: 4,
    header: true,
    file: FILE,
  });
  const users = contiguousIds(tableColumn(table, 0));
  const movies = contiguousIds(tableColumn(table, 1));
  const userIndex = users.indices[0]!;
  const movieIndex = movies.indices[0]!;
  const rating = Float32Array.from(tableColumn(table, 2));
  const ratings: MovieLensRatings = {
    numRatings: table.rows,
    numUsers: users.ids.length,
    numMovies: movies.ids.length,
    userIndex,
    movieIndex,
    rating,
    timestamp: tableColumn(table, 3),
    userIds: users.ids,
    movieIds: movies.ids,
    toTensors: () => ({
      userIndex: tensor1d(userIndex, 'int32'),
      movieIndex: tensor1d(movieIndex, 'int32'),
      rating: tensor1d(rating, 'float32'),
    }),
  };
  return ratings;
}
