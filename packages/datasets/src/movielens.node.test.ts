import { useBackend } from '@dynn/core';
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadMovieLens, type MovieLensRatings } from './movielens.js';

describe('loadMovieLens', () => {
  let ratings: MovieLensRatings;
  beforeAll(async () => {
    await useBackend('cpu');
    ratings = await loadMovieLens();
  });

  it('has 100,004 ratings by 671 users of 9,066 movies', () => {
    expect(ratings.numRatings).toBe(100_004);
    expect(ratings.numUsers).toBe(671);
    expect(ratings.numMovies).toBe(9_066);
    for (const column of [ratings.userIndex, ratings.movieIndex, ratings.rating, ratings.timestamp]) {
      expect(column).toHaveLength(100_004);
    }
  });

  it('numbers users and movies 0..n-1 and maps them back to MovieLens ids', () => {
    expect(Math.max(...ratings.userIndex)).toBe(670);
    expect(Math.max(...ratings.movieIndex)).toBe(9_065);
    expect(ratings.userIds[ratings.userIndex[0]!]).toBe(1);
    expect(ratings.movieIds[ratings.movieIndex[0]!]).toBe(31);
    expect([ratings.rating[0], ratings.timestamp[0]]).toEqual([2.5, 1_260_759_144]);
  });

  it('has half-star ratings from 0.5 to 5', () => {
    expect([Math.min(...ratings.rating), Math.max(...ratings.rating)]).toEqual([0.5, 5]);
    expect(ratings.rating.every((rating) => Number.isInteger(rating * 2))).toBe(true);
  });

  it('gives index and rating tensors', async () => {
    const before = tf.memory().numTensors;
    const { userIndex, movieIndex, rating } = ratings.toTensors();
    expect([userIndex.dtype, movieIndex.dtype, rating.dtype]).toEqual(['int32', 'int32', 'float32']);
    expect(rating.shape).toEqual([100_004]);
    tf.dispose([userIndex, movieIndex, rating]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
